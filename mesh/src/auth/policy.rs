//! Per-RPC access rules, declared next to each service.

use std::collections::HashMap;

use super::{AuthError, Caller, TokenKind};

/// Paths served without a token: health checks (load balancers, orchestrators) and server
/// reflection (tooling). They expose no tenant data.
pub const PUBLIC_PATH_PREFIXES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// What one RPC requires: a token of one kind, and one of the rule's alternatives: a scope
/// the token must carry and, for service tokens, the issuers allowed to present it.
///
/// A service rule names its issuers ([`Rule::issued_by`]): a scope alone says what a token
/// claims, not who may claim it, and every service's key can sign any scope. A [`Policy`]
/// refuses (panics on) a service rule that names none. Tenant tokens have one issuer
/// (`tenant-svc`, enforced by the verifier), so tenant rules name a scope only.
///
/// ```
/// # use mesh::auth::Rule;
/// # use mesh::identity::{names, scope};
/// // The operator with `memory:admin`, or tenant-svc fanning out a tenant erasure.
/// let erase = Rule::service(scope::MEMORY_ADMIN)
///     .issued_by(&[names::OPERATOR])
///     .or(Rule::service(scope::MEMORY_ERASE_TENANT).issued_by(&[names::TENANT_SVC]));
/// # assert_eq!(erase.alternatives().count(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    kind: TokenKind,
    grants: Vec<Grant>,
}

/// One way to satisfy a [`Rule`]: a scope, and for service tokens the allowed issuers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    scope: String,
    /// Empty for tenant rules (one issuer, checked by the verifier); for a service rule, empty
    /// means "not declared yet", which [`Policy::rule`] refuses.
    issuers: Vec<String>,
}

impl Grant {
    /// The scope this alternative needs.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The issuers allowed to use it (empty for tenant rules).
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.issuers.iter().map(String::as_str)
    }
}

impl Rule {
    /// A service token with `scope`; name its issuers with [`Rule::issued_by`].
    pub fn service(scope: &str) -> Rule {
        Rule {
            kind: TokenKind::Service,
            grants: vec![Grant {
                scope: scope.to_owned(),
                issuers: Vec::new(),
            }],
        }
    }

    /// A tenant token with `scope`.
    pub fn tenant(scope: &str) -> Rule {
        Rule {
            kind: TokenKind::Tenant,
            grants: vec![Grant {
                scope: scope.to_owned(),
                issuers: Vec::new(),
            }],
        }
    }

    /// Only tokens whose issuer (`iss`, bound to the signing key) is one of `issuers` satisfy
    /// this rule's alternatives that name no issuer yet.
    ///
    /// # Panics
    /// On a tenant rule (tenant tokens have one issuer) or an empty list.
    pub fn issued_by(mut self, issuers: &[&str]) -> Rule {
        assert!(
            self.kind == TokenKind::Service,
            "issued_by is for service rules; tenant tokens have one issuer"
        );
        assert!(!issuers.is_empty(), "issued_by needs at least one issuer");
        for grant in self.grants.iter_mut().filter(|g| g.issuers.is_empty()) {
            grant.issuers = issuers.iter().map(|i| (*i).to_owned()).collect();
        }
        self
    }

    /// This rule, or else `other` (same token kind): the caller satisfies either.
    ///
    /// # Panics
    /// If the kinds differ.
    pub fn or(mut self, other: Rule) -> Rule {
        assert!(
            self.kind == other.kind,
            "a rule's alternatives must need the same token kind"
        );
        self.grants.extend(other.grants);
        self
    }

    /// The required token kind.
    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The alternatives, in declaration order.
    pub fn alternatives(&self) -> impl Iterator<Item = &Grant> {
        self.grants.iter()
    }

    /// Whether every alternative of a service rule names its issuers.
    pub fn names_issuers(&self) -> bool {
        self.kind == TokenKind::Tenant || self.grants.iter().all(|g| !g.issuers.is_empty())
    }

    /// Whether `caller` satisfies this rule; the error is a PERMISSION_DENIED one: the wrong
    /// kind, an issuer no alternative allows, or (the issuer being allowed) a missing scope.
    pub fn check(&self, caller: &Caller) -> Result<(), AuthError> {
        if caller.kind() != self.kind {
            return Err(AuthError::WrongKind {
                expected: self.kind,
                got: caller.kind(),
            });
        }
        let issuer = match caller {
            Caller::Service(s) => Some(s.issuer.as_str()),
            Caller::Tenant(_) => None,
        };
        let mut open_to_issuer = self.grants.iter().filter(|g| match issuer {
            Some(iss) => g.issuers.iter().any(|i| i == iss),
            None => true,
        });
        let Some(first) = open_to_issuer.clone().next() else {
            return Err(AuthError::IssuerNotAllowed(
                issuer.map(super::sanitize_for_log).unwrap_or_default(),
            ));
        };
        if open_to_issuer.any(|g| caller.scopes().contains(&g.scope)) {
            return Ok(());
        }
        Err(AuthError::MissingScope(first.scope.clone()))
    }
}

/// The access rules of one server: full gRPC path (`/package.Service/Method`) to [`Rule`].
/// A path that is neither public nor listed is refused (fail closed), so adding an RPC to a
/// proto without adding its rule makes it unreachable rather than open.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: HashMap<String, Rule>,
}

impl Policy {
    /// An empty policy (refuses every non-public path).
    pub fn new() -> Policy {
        Policy::default()
    }

    /// Adds the rule for one full path, e.g. `"/neurosphere.tenant.v1.EdgeService/ResolveNumber"`.
    ///
    /// # Panics
    /// If the path is not `/<service>/<method>`, already has a rule, or its rule is a service
    /// rule that names no issuer: policies are static
    /// declarations, and a typo must stop the server at start-up rather than open or close a
    /// method silently.
    pub fn rule(mut self, path: &str, rule: Rule) -> Policy {
        let well_formed = path
            .strip_prefix('/')
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(service, method)| {
                !service.is_empty() && !method.is_empty() && !method.contains('/')
            });
        assert!(
            well_formed,
            "policy path {path:?} is not /<package.Service>/<Method>"
        );
        assert!(
            rule.names_issuers(),
            "policy path {path:?}: a service rule must name its issuers (Rule::issued_by)"
        );
        let previous = self.rules.insert(path.to_owned(), rule);
        assert!(previous.is_none(), "policy path {path:?} has two rules");
        self
    }

    /// Adds rules for several methods of one service, given its full name
    /// (`"neurosphere.tenant.v1.EdgeService"`) and `(method, rule)` pairs.
    ///
    /// # Panics
    /// As [`Policy::rule`].
    pub fn service_methods(mut self, service_full_name: &str, methods: &[(&str, Rule)]) -> Policy {
        for (method, rule) in methods {
            self = self.rule(&format!("/{service_full_name}/{method}"), rule.clone());
        }
        self
    }

    /// The full names of the gRPC services this policy has rules for, sorted (what the health
    /// service reports on: a service is declared once, here).
    pub fn service_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .rules
            .keys()
            .filter_map(|path| path.trim_start_matches('/').split_once('/'))
            .map(|(service, _)| service.to_owned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The rule for a path, if any.
    pub fn get(&self, path: &str) -> Option<&Rule> {
        self.rules.get(path)
    }

    /// Whether a path needs no token: a method (no further `/`) under one of
    /// [`PUBLIC_PATH_PREFIXES`].
    pub fn is_public(path: &str) -> bool {
        PUBLIC_PATH_PREFIXES.iter().any(|prefix| {
            path.strip_prefix(prefix)
                .is_some_and(|method| !method.is_empty() && !method.contains('/'))
        })
    }

    /// The listed paths and their rules.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Rule)> {
        self.rules.iter().map(|(p, r)| (p.as_str(), r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Scopes, ServiceCaller, TenantCaller};
    use crate::domain::CustomerId;

    #[test]
    fn public_paths_are_exact_methods_under_known_prefixes() {
        assert!(Policy::is_public("/grpc.health.v1.Health/Check"));
        assert!(Policy::is_public(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
        assert!(Policy::is_public(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!Policy::is_public("/grpc.health.v1.Health/"));
        assert!(!Policy::is_public("/grpc.health.v1.Health/Check/../x"));
        assert!(!Policy::is_public("/grpc.health.v1.HealthX/Check"));
        assert!(!Policy::is_public(
            "/neurosphere.tenant.v1.EdgeService/ResolveNumber"
        ));
    }

    #[test]
    fn the_services_a_policy_names_are_listed_once_each_in_order() {
        let policy = Policy::new()
            .service_methods(
                "neurosphere.tenant.v1.TenantService",
                &[
                    ("GetMyCustomer", Rule::tenant("tenant:read")),
                    ("UpdateAgentConfig", Rule::tenant("tenant:write")),
                ],
            )
            .service_methods(
                "neurosphere.tenant.v1.EdgeService",
                &[(
                    "ResolveNumber",
                    Rule::service("tenant:resolve").issued_by(&["gateway"]),
                )],
            );
        assert_eq!(
            policy.service_names(),
            [
                "neurosphere.tenant.v1.EdgeService",
                "neurosphere.tenant.v1.TenantService"
            ]
        );
        assert!(Policy::new().service_names().is_empty());
    }

    #[test]
    fn service_methods_expand_to_full_paths() {
        let policy = Policy::new().service_methods(
            "neurosphere.tenant.v1.EdgeService",
            &[(
                "ResolveNumber",
                Rule::service("tenant:resolve").issued_by(&["gateway"]),
            )],
        );
        assert_eq!(
            policy.get("/neurosphere.tenant.v1.EdgeService/ResolveNumber"),
            Some(&Rule::service("tenant:resolve").issued_by(&["gateway"]))
        );
        assert_eq!(policy.get("/neurosphere.tenant.v1.EdgeService/Other"), None);
    }

    #[test]
    #[should_panic(expected = "two rules")]
    fn duplicate_rules_panic() {
        let _ = Policy::new()
            .rule("/a.S/M", Rule::service("x").issued_by(&["gateway"]))
            .rule("/a.S/M", Rule::tenant("x"));
    }

    #[test]
    #[should_panic(expected = "is not")]
    fn malformed_paths_panic() {
        let _ = Policy::new().rule("a.S/M", Rule::service("x").issued_by(&["gateway"]));
    }

    #[test]
    fn rules_check_kind_then_scope() {
        let service = Caller::Service(ServiceCaller {
            issuer: "gateway".into(),
            scopes: Scopes::parse("tenant:resolve"),
        });
        let tenant = Caller::Tenant(TenantCaller {
            customer_id: CustomerId::new(7).unwrap(),
            subject: "CA1".into(),
            scopes: Scopes::parse("tenant:read"),
        });
        assert_eq!(
            Rule::service("tenant:resolve")
                .issued_by(&["gateway"])
                .check(&service),
            Ok(())
        );
        assert_eq!(Rule::tenant("tenant:read").check(&tenant), Ok(()));
        assert!(matches!(
            Rule::service("tenant:read").check(&tenant),
            Err(AuthError::WrongKind {
                expected: TokenKind::Service,
                got: TokenKind::Tenant
            })
        ));
        assert_eq!(
            Rule::service("tenant:admin")
                .issued_by(&["gateway"])
                .check(&service),
            Err(AuthError::MissingScope("tenant:admin".into()))
        );
    }
}
