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

/// What one RPC requires: a token of one kind carrying one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    kind: TokenKind,
    scope: String,
}

impl Rule {
    /// A service token with `scope`.
    pub fn service(scope: &str) -> Rule {
        Rule {
            kind: TokenKind::Service,
            scope: scope.to_owned(),
        }
    }

    /// A tenant token with `scope`.
    pub fn tenant(scope: &str) -> Rule {
        Rule {
            kind: TokenKind::Tenant,
            scope: scope.to_owned(),
        }
    }

    /// The required token kind.
    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The required scope.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Whether `caller` satisfies this rule; the error is a PERMISSION_DENIED one.
    pub fn check(&self, caller: &Caller) -> Result<(), AuthError> {
        if caller.kind() != self.kind {
            return Err(AuthError::WrongKind {
                expected: self.kind,
                got: caller.kind(),
            });
        }
        if !caller.scopes().contains(&self.scope) {
            return Err(AuthError::MissingScope(self.scope.clone()));
        }
        Ok(())
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
    /// If the path is not `/<service>/<method>` or already has a rule: policies are static
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
                &[("ResolveNumber", Rule::service("tenant:resolve"))],
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
            &[("ResolveNumber", Rule::service("tenant:resolve"))],
        );
        assert_eq!(
            policy.get("/neurosphere.tenant.v1.EdgeService/ResolveNumber"),
            Some(&Rule::service("tenant:resolve"))
        );
        assert_eq!(policy.get("/neurosphere.tenant.v1.EdgeService/Other"), None);
    }

    #[test]
    #[should_panic(expected = "two rules")]
    fn duplicate_rules_panic() {
        let _ = Policy::new()
            .rule("/a.S/M", Rule::service("x"))
            .rule("/a.S/M", Rule::tenant("x"));
    }

    #[test]
    #[should_panic(expected = "is not")]
    fn malformed_paths_panic() {
        let _ = Policy::new().rule("a.S/M", Rule::service("x"));
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
        assert_eq!(Rule::service("tenant:resolve").check(&service), Ok(()));
        assert_eq!(Rule::tenant("tenant:read").check(&tenant), Ok(()));
        assert!(matches!(
            Rule::service("tenant:read").check(&tenant),
            Err(AuthError::WrongKind {
                expected: TokenKind::Service,
                got: TokenKind::Tenant
            })
        ));
        assert_eq!(
            Rule::service("tenant:admin").check(&service),
            Err(AuthError::MissingScope("tenant:admin".into()))
        );
    }
}
