-- V11: change notifications for tenant-svc's in-memory call-routing cache.
--
-- What:
--   * `tenant.notify_routing()`, an AFTER ROW trigger function on `tenant.customers` and
--     `tenant.phone_numbers`: every insert, update or delete sends `pg_notify('tenant_routing',
--     '<customer_id>')` for the customer(s) the row belonged to before and after the change.
--   * The same trigger, statement-level, on `tenant.platform_defaults`, with the payload `*`
--     (every customer's effective profile may have changed).
--
-- Why:
--   * ResolveNumber runs for every incoming call. tenant-svc answers it from memory (number ->
--     customer, status, overrides) and drops the entries of a customer as soon as this
--     notification arrives, on every replica. NOTIFY is delivered only when the transaction
--     commits, and only once per distinct payload per transaction, so a suspended customer,
--     a released or reassigned number, or a new greeting is seen by every replica within the
--     notification latency (milliseconds), not after a TTL. tenant-svc stops serving from
--     memory whenever its listening connection is down (see tenant-svc/src/routing.rs).
--   * The payload is a customer id, nothing else: no number, name or setting crosses the
--     channel. LISTEN needs no privilege, so any login role of this database could hear which
--     customer ids change, and nothing more.
--   * The function runs as the invoker (tenant_svc); pg_notify needs no grant. It is owned by
--     neurosphere_owner like every object (V1's conventions).

SET LOCAL ROLE neurosphere_owner;

CREATE FUNCTION tenant.notify_routing()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pg_notify('tenant_routing', '*');
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('tenant_routing', OLD.customer_id::text);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.customer_id IS DISTINCT FROM OLD.customer_id) THEN
        PERFORM pg_notify('tenant_routing', NEW.customer_id::text);
    END IF;
    RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION tenant.notify_routing() FROM PUBLIC;

CREATE TRIGGER routing_changed
    AFTER INSERT OR UPDATE OR DELETE ON tenant.phone_numbers
    FOR EACH ROW EXECUTE FUNCTION tenant.notify_routing();

CREATE TRIGGER routing_changed
    AFTER UPDATE OR DELETE ON tenant.customers
    FOR EACH ROW EXECUTE FUNCTION tenant.notify_routing();

CREATE TRIGGER routing_changed
    AFTER INSERT OR UPDATE OR DELETE ON tenant.platform_defaults
    FOR EACH STATEMENT EXECUTE FUNCTION tenant.notify_routing();

RESET ROLE;
