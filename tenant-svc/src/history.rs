//! The unit of configuration history: one [`Change`] per changed field, of one [`ConfigType`].
//! Every writer of `tenant.customer_configurations` (agent configuration, status, phone numbers,
//! outbound settings, webhook secret rotations) builds these, and `store` appends them; the
//! types live here, below all of them, so that none of those modules imports another for them.

use serde_json::Value;

/// The `config_type` column of `tenant.customer_configurations` (plain text in the schema; these
/// are the only values tenant-svc writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    /// An agent configuration field other than a slider.
    Agent,
    /// One slider (`sliders.<name>`).
    Slider,
    /// The customer's status.
    Status,
    /// A phone number assigned or released.
    PhoneNumber,
    /// Outbound-call and webhook settings, and webhook secret rotations.
    Outbound,
    /// Call-handling settings (recording, retention, messages, opening hours).
    CallHandling,
}

impl ConfigType {
    /// The column's text.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigType::Agent => "agent",
            ConfigType::Slider => "slider",
            ConfigType::Status => "status",
            ConfigType::PhoneNumber => "phone_number",
            ConfigType::Outbound => "outbound",
            ConfigType::CallHandling => "call_handling",
        }
    }
}

/// One history entry: a field whose value changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// What kind of setting.
    pub config_type: ConfigType,
    /// Field path.
    pub key: String,
    /// Previous value, `None` when unset.
    pub old: Option<Value>,
    /// New value, `None` when reset.
    pub new: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts already in every database: renaming one would split the history.
    #[test]
    fn config_types_keep_their_column_text() {
        let all = [
            (ConfigType::Agent, "agent"),
            (ConfigType::Slider, "slider"),
            (ConfigType::Status, "status"),
            (ConfigType::PhoneNumber, "phone_number"),
            (ConfigType::Outbound, "outbound"),
            (ConfigType::CallHandling, "call_handling"),
        ];
        for (t, text) in all {
            assert_eq!(t.as_str(), text);
        }
    }
}
