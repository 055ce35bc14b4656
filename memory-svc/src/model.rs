//! The closed sets of memory-svc's text columns, as Rust enums.
//!
//! The `memory` schema (migration V3) stores a summary's sentiment and resolution, the
//! personality trends, an audit row's action and a memory's type and scope as `text` with a
//! `CHECK` listing the allowed spellings. The code handles them as enums; the spellings live
//! here once, and the store reads and writes the enums themselves (`FromSql`/`ToSql` over
//! `text`), so no SQL call site passes or parses a bare string. The schema is unchanged.

use std::error::Error;

use mesh::api::memory::{MemoryScope, MemoryType};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

/// Declares an enum whose variants are the allowed spellings of one text column, with its
/// `as_str`/`parse` and its conversions to and from that column.
macro_rules! text_column {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The column's spelling (also the wire's, where the API carries it as a string).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value spelled `text`, if any.
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<'a> FromSql<'a> for $name {
            fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
                let text = <&str as FromSql>::from_sql(ty, raw)?;
                $name::parse(text).ok_or_else(|| {
                    format!(concat!("unknown ", stringify!($name), " {:?}"), text).into()
                })
            }

            fn accepts(ty: &Type) -> bool {
                <&str as FromSql>::accepts(ty)
            }
        }

        // `BytesMut` is named through postgres-types' re-export, the path its own
        // `to_sql_checked!` uses, so the crate needs no direct `bytes` dependency.
        impl ToSql for $name {
            fn to_sql(
                &self,
                ty: &Type,
                out: &mut tokio_postgres::types::private::BytesMut,
            ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
                self.as_str().to_sql(ty, out)
            }

            fn accepts(ty: &Type) -> bool {
                <&str as ToSql>::accepts(ty)
            }

            to_sql_checked!();
        }
    };
}

text_column! {
    /// How the caller sounded (`call_summaries.sentiment`).
    Sentiment {
        /// Mostly positive words.
        Positive = "positive",
        /// Neither.
        Neutral = "neutral",
        /// Mostly negative words.
        Negative = "negative",
    }
}

text_column! {
    /// How the call ended (`call_summaries.resolution_status`).
    Resolution {
        /// The caller's need was met.
        Resolved = "resolved",
        /// It was not.
        Unresolved = "unresolved",
        /// Someone has to get back to the caller.
        FollowUp = "follow_up",
        /// The call ended in a transfer.
        Transferred = "transferred",
    }
}

text_column! {
    /// Where a personality score is heading (`personality_averages.*_trend`): computed by the
    /// store from successive `personality_metrics` rows.
    Trend {
        /// Better by at least 5 points (satisfaction up, frustration down).
        Improving = "improving",
        /// Within 5 points, or too few calls to tell.
        Stable = "stable",
        /// Worse by at least 5 points.
        Declining = "declining",
    }
}

text_column! {
    /// What an audit row records (`audit_log.action`).
    AuditAction {
        /// A caller's rows were read out (ExportCaller).
        ExportCaller = "export_caller",
        /// A caller's rows were deleted (EraseCaller).
        EraseCaller = "erase_caller",
        /// A tenant's rows were deleted (EraseTenant).
        EraseTenant = "erase_tenant",
    }
}

text_column! {
    /// A memory's type (`memories.type`); the wire's [`MemoryType`] without `UNSPECIFIED`.
    MemoryKind {
        /// A person.
        Person = "person",
        /// A preference.
        Preference = "preference",
        /// A project.
        Project = "project",
        /// A rule.
        Rule = "rule",
        /// A moment.
        Moment = "moment",
        /// A fact.
        Fact = "fact",
        /// A recap of a thread.
        ThreadRecap = "thread_recap",
        /// A conversation.
        Conversation = "conversation",
        /// A task.
        Task = "task",
    }
}

text_column! {
    /// Who a memory is for (`memories.scope`).
    Scope {
        /// The caller only.
        User = "user",
        /// Shared.
        Shared = "shared",
    }
}

impl MemoryKind {
    /// The stored type of a wire type; `None` for `UNSPECIFIED`.
    pub fn from_wire(t: MemoryType) -> Option<MemoryKind> {
        Some(match t {
            MemoryType::Unspecified => return None,
            MemoryType::Person => MemoryKind::Person,
            MemoryType::Preference => MemoryKind::Preference,
            MemoryType::Project => MemoryKind::Project,
            MemoryType::Rule => MemoryKind::Rule,
            MemoryType::Moment => MemoryKind::Moment,
            MemoryType::Fact => MemoryKind::Fact,
            MemoryType::ThreadRecap => MemoryKind::ThreadRecap,
            MemoryType::Conversation => MemoryKind::Conversation,
            MemoryType::Task => MemoryKind::Task,
        })
    }

    /// The wire type.
    pub fn to_wire(self) -> MemoryType {
        match self {
            MemoryKind::Person => MemoryType::Person,
            MemoryKind::Preference => MemoryType::Preference,
            MemoryKind::Project => MemoryType::Project,
            MemoryKind::Rule => MemoryType::Rule,
            MemoryKind::Moment => MemoryType::Moment,
            MemoryKind::Fact => MemoryType::Fact,
            MemoryKind::ThreadRecap => MemoryType::ThreadRecap,
            MemoryKind::Conversation => MemoryType::Conversation,
            MemoryKind::Task => MemoryType::Task,
        }
    }
}

impl Scope {
    /// The stored scope of a wire scope (`UNSPECIFIED` means the caller only).
    pub fn from_wire(s: MemoryScope) -> Scope {
        match s {
            MemoryScope::Unspecified | MemoryScope::User => Scope::User,
            MemoryScope::Shared => Scope::Shared,
        }
    }

    /// The wire scope.
    pub fn to_wire(self) -> MemoryScope {
        match self {
            Scope::User => MemoryScope::User,
            Scope::Shared => MemoryScope::Shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for s in Sentiment::ALL {
            assert_eq!(Sentiment::parse(s.as_str()), Some(*s));
        }
        for r in Resolution::ALL {
            assert_eq!(Resolution::parse(r.as_str()), Some(*r));
        }
        for t in Trend::ALL {
            assert_eq!(Trend::parse(t.as_str()), Some(*t));
        }
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(*a));
        }
        assert_eq!(Trend::parse("sideways"), None);
    }

    #[test]
    fn kinds_and_scopes_match_the_wire() {
        assert_eq!(MemoryKind::from_wire(MemoryType::Unspecified), None);
        for k in MemoryKind::ALL {
            assert_eq!(MemoryKind::from_wire(k.to_wire()), Some(*k));
        }
        for s in Scope::ALL {
            assert_eq!(Scope::from_wire(s.to_wire()), *s);
        }
        assert_eq!(Scope::from_wire(MemoryScope::Unspecified), Scope::User);
        assert_eq!(MemoryKind::Task.as_str(), "task");
    }
}
