-- V14: toll fraud and the outbound allowance (issue 18, points 6 and 4).
--
-- What:
--   * `tenant.outbound_settings.allowed_country_codes` becomes `allowed_regions`: ISO 3166
--     alpha-2 regions instead of country calling codes. A calling code is not a region: `1` alone
--     reaches about 25 regions, the Caribbean's premium lines included. Existing entries migrate
--     by the table below: `1` becomes US and CA (not the rest of the North American plan), every
--     other code its main region in libphonenumber's metadata (`7` RU, `44` GB, `39` IT, `61` AU,
--     `262` RE, `590` GP, `599` CW, ...). Codes of non-geographic numbers (800, 808, 870, 878, 881,
--     882, 883, 888, 979) migrate to nothing: such numbers now need the tenant to allow the kind
--     `non_geographic` explicitly. The table is data only (no function stays behind);
--     `tenant-svc/tests/it/outbound_settings.rs::v14_migrates_calling_codes_to_regions` applies
--     V1..V13 with old rows, then this file, and checks the result, and
--     `tenant-svc/src/validate/outbound.rs` checks the table against the metadata.
--   * `allowed_number_types`: the restricted kinds of number (premium_rate, shared_cost,
--     personal_number, pager, uan, voicemail, unknown, non_geographic) the tenant allows anyway;
--     empty by default, so they are refused.
--   * `transfer_regions`: the regions transfer targets may be in; empty means the regions of the
--     tenant's own numbers.
--   * `max_call_minutes`: the longest any of the tenant's calls may last (placed calls, transfers,
--     inbound calls); 0 means the platform's 60 minutes.
--   * `media.outbound_address_charges`: one row per outbound call placed through the gateway's
--     public endpoint, keyed by tenant and a keyed hash (HMAC-SHA256 with media-svc's caller hash
--     key) of the client's address (IPv4 address, IPv6 /64): the per-address allowance, counted
--     under the tenant's call-limit lock, so it holds across gateway replicas and restarts. No raw
--     address is stored; rows older than the window are deleted by the tenant's next placement.
--
-- Why: same conventions as V4/V7 (customer_id first in every key, RLS enabled and forced, grants
-- to the owning service only; see V1).

SET LOCAL ROLE neurosphere_owner;

ALTER TABLE tenant.outbound_settings RENAME COLUMN allowed_country_codes TO allowed_regions;

-- The rows of every tenant are rewritten: the owner reads them past RLS only while the table is
-- not forced, inside this transaction (FORCE is back before it commits).
ALTER TABLE tenant.outbound_settings NO FORCE ROW LEVEL SECURITY;

WITH code_regions (code, regions) AS (
    VALUES
        ('1', ARRAY['US', 'CA']), ('7', ARRAY['RU']), ('20', ARRAY['EG']), ('27', ARRAY['ZA']),
        ('30', ARRAY['GR']), ('31', ARRAY['NL']), ('32', ARRAY['BE']), ('33', ARRAY['FR']),
        ('34', ARRAY['ES']), ('36', ARRAY['HU']), ('39', ARRAY['IT']), ('40', ARRAY['RO']),
        ('41', ARRAY['CH']), ('43', ARRAY['AT']), ('44', ARRAY['GB']), ('45', ARRAY['DK']),
        ('46', ARRAY['SE']), ('47', ARRAY['NO']), ('48', ARRAY['PL']), ('49', ARRAY['DE']),
        ('51', ARRAY['PE']), ('52', ARRAY['MX']), ('53', ARRAY['CU']), ('54', ARRAY['AR']),
        ('55', ARRAY['BR']), ('56', ARRAY['CL']), ('57', ARRAY['CO']), ('58', ARRAY['VE']),
        ('60', ARRAY['MY']), ('61', ARRAY['AU']), ('62', ARRAY['ID']), ('63', ARRAY['PH']),
        ('64', ARRAY['NZ']), ('65', ARRAY['SG']), ('66', ARRAY['TH']), ('81', ARRAY['JP']),
        ('82', ARRAY['KR']), ('84', ARRAY['VN']), ('86', ARRAY['CN']), ('90', ARRAY['TR']),
        ('91', ARRAY['IN']), ('92', ARRAY['PK']), ('93', ARRAY['AF']), ('94', ARRAY['LK']),
        ('95', ARRAY['MM']), ('98', ARRAY['IR']), ('211', ARRAY['SS']), ('212', ARRAY['MA']),
        ('213', ARRAY['DZ']), ('216', ARRAY['TN']), ('218', ARRAY['LY']), ('220', ARRAY['GM']),
        ('221', ARRAY['SN']), ('222', ARRAY['MR']), ('223', ARRAY['ML']), ('224', ARRAY['GN']),
        ('225', ARRAY['CI']), ('226', ARRAY['BF']), ('227', ARRAY['NE']), ('228', ARRAY['TG']),
        ('229', ARRAY['BJ']), ('230', ARRAY['MU']), ('231', ARRAY['LR']), ('232', ARRAY['SL']),
        ('233', ARRAY['GH']), ('234', ARRAY['NG']), ('235', ARRAY['TD']), ('236', ARRAY['CF']),
        ('237', ARRAY['CM']), ('238', ARRAY['CV']), ('239', ARRAY['ST']), ('240', ARRAY['GQ']),
        ('241', ARRAY['GA']), ('242', ARRAY['CG']), ('243', ARRAY['CD']), ('244', ARRAY['AO']),
        ('245', ARRAY['GW']), ('246', ARRAY['IO']), ('247', ARRAY['AC']), ('248', ARRAY['SC']),
        ('249', ARRAY['SD']), ('250', ARRAY['RW']), ('251', ARRAY['ET']), ('252', ARRAY['SO']),
        ('253', ARRAY['DJ']), ('254', ARRAY['KE']), ('255', ARRAY['TZ']), ('256', ARRAY['UG']),
        ('257', ARRAY['BI']), ('258', ARRAY['MZ']), ('260', ARRAY['ZM']), ('261', ARRAY['MG']),
        ('262', ARRAY['RE']), ('263', ARRAY['ZW']), ('264', ARRAY['NA']), ('265', ARRAY['MW']),
        ('266', ARRAY['LS']), ('267', ARRAY['BW']), ('268', ARRAY['SZ']), ('269', ARRAY['KM']),
        ('290', ARRAY['SH']), ('291', ARRAY['ER']), ('297', ARRAY['AW']), ('298', ARRAY['FO']),
        ('299', ARRAY['GL']), ('350', ARRAY['GI']), ('351', ARRAY['PT']), ('352', ARRAY['LU']),
        ('353', ARRAY['IE']), ('354', ARRAY['IS']), ('355', ARRAY['AL']), ('356', ARRAY['MT']),
        ('357', ARRAY['CY']), ('358', ARRAY['FI']), ('359', ARRAY['BG']), ('370', ARRAY['LT']),
        ('371', ARRAY['LV']), ('372', ARRAY['EE']), ('373', ARRAY['MD']), ('374', ARRAY['AM']),
        ('375', ARRAY['BY']), ('376', ARRAY['AD']), ('377', ARRAY['MC']), ('378', ARRAY['SM']),
        ('380', ARRAY['UA']), ('381', ARRAY['RS']), ('382', ARRAY['ME']), ('383', ARRAY['XK']),
        ('385', ARRAY['HR']), ('386', ARRAY['SI']), ('387', ARRAY['BA']), ('389', ARRAY['MK']),
        ('420', ARRAY['CZ']), ('421', ARRAY['SK']), ('423', ARRAY['LI']), ('500', ARRAY['FK']),
        ('501', ARRAY['BZ']), ('502', ARRAY['GT']), ('503', ARRAY['SV']), ('504', ARRAY['HN']),
        ('505', ARRAY['NI']), ('506', ARRAY['CR']), ('507', ARRAY['PA']), ('508', ARRAY['PM']),
        ('509', ARRAY['HT']), ('590', ARRAY['GP']), ('591', ARRAY['BO']), ('592', ARRAY['GY']),
        ('593', ARRAY['EC']), ('594', ARRAY['GF']), ('595', ARRAY['PY']), ('596', ARRAY['MQ']),
        ('597', ARRAY['SR']), ('598', ARRAY['UY']), ('599', ARRAY['CW']), ('670', ARRAY['TL']),
        ('672', ARRAY['NF']), ('673', ARRAY['BN']), ('674', ARRAY['NR']), ('675', ARRAY['PG']),
        ('676', ARRAY['TO']), ('677', ARRAY['SB']), ('678', ARRAY['VU']), ('679', ARRAY['FJ']),
        ('680', ARRAY['PW']), ('681', ARRAY['WF']), ('682', ARRAY['CK']), ('683', ARRAY['NU']),
        ('685', ARRAY['WS']), ('686', ARRAY['KI']), ('687', ARRAY['NC']), ('688', ARRAY['TV']),
        ('689', ARRAY['PF']), ('690', ARRAY['TK']), ('691', ARRAY['FM']), ('692', ARRAY['MH']),
        ('850', ARRAY['KP']), ('852', ARRAY['HK']), ('853', ARRAY['MO']), ('855', ARRAY['KH']),
        ('856', ARRAY['LA']), ('880', ARRAY['BD']), ('886', ARRAY['TW']), ('960', ARRAY['MV']),
        ('961', ARRAY['LB']), ('962', ARRAY['JO']), ('963', ARRAY['SY']), ('964', ARRAY['IQ']),
        ('965', ARRAY['KW']), ('966', ARRAY['SA']), ('967', ARRAY['YE']), ('968', ARRAY['OM']),
        ('970', ARRAY['PS']), ('971', ARRAY['AE']), ('972', ARRAY['IL']), ('973', ARRAY['BH']),
        ('974', ARRAY['QA']), ('975', ARRAY['BT']), ('976', ARRAY['MN']), ('977', ARRAY['NP']),
        ('992', ARRAY['TJ']), ('993', ARRAY['TM']), ('994', ARRAY['AZ']), ('995', ARRAY['GE']),
        ('996', ARRAY['KG']), ('998', ARRAY['UZ'])
),
migrated AS (
    SELECT s.customer_id,
           COALESCE((SELECT array_agg(DISTINCT r ORDER BY r)
                     FROM unnest(s.allowed_regions) AS c (code)
                     JOIN code_regions m ON m.code = c.code
                     CROSS JOIN LATERAL unnest(m.regions) AS r), '{}') AS regions
    FROM tenant.outbound_settings s
)
UPDATE tenant.outbound_settings s SET allowed_regions = m.regions
FROM migrated m WHERE m.customer_id = s.customer_id;

ALTER TABLE tenant.outbound_settings FORCE ROW LEVEL SECURITY;

ALTER TABLE tenant.outbound_settings
    ADD CONSTRAINT outbound_settings_regions_check
        CHECK (array_to_string(allowed_regions, ',') ~ '^([A-Z]{2}(,[A-Z]{2})*)?$'),
    ADD COLUMN allowed_number_types text[] NOT NULL DEFAULT '{}'
        CHECK (cardinality(allowed_number_types) <= 8),
    ADD COLUMN transfer_regions text[] NOT NULL DEFAULT '{}'
        CHECK (cardinality(transfer_regions) <= 50
               AND array_to_string(transfer_regions, ',') ~ '^([A-Z]{2}(,[A-Z]{2})*)?$'),
    ADD COLUMN max_call_minutes integer NOT NULL DEFAULT 0
        CHECK (max_call_minutes BETWEEN 0 AND 240);

CREATE TABLE media.outbound_address_charges (
    customer_id  bigint      NOT NULL,
    id           bigint      GENERATED ALWAYS AS IDENTITY,
    address_hash bytea       NOT NULL CHECK (octet_length(address_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, id)
);

CREATE INDEX outbound_address_charges_idx
    ON media.outbound_address_charges (customer_id, address_hash, created_at);

ALTER TABLE media.outbound_address_charges ENABLE ROW LEVEL SECURITY;
ALTER TABLE media.outbound_address_charges FORCE ROW LEVEL SECURITY;

CREATE POLICY outbound_address_charges_tenant ON media.outbound_address_charges TO media_svc
    USING (customer_id = app.current_customer_id())
    WITH CHECK (customer_id = app.current_customer_id());

GRANT SELECT, INSERT, DELETE ON media.outbound_address_charges TO media_svc;

RESET ROLE;
