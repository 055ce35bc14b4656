//! Accessibility checks with axe-core, the committed copy in `tests/vendor/axe-core/`
//! (`scripts/refresh-axe.sh` refreshes it from its npm package). The script is injected into the
//! page over WebDriver (script execution by the driver is not subject to the page's CSP, so the
//! portal's `default-src 'self'` stays as it is) and `axe.run()` checks the whole document.

use std::fmt;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use serde_json::Value;

use super::Browser;

/// axe-core's minified build, as committed.
const AXE_SOURCE: &str = include_str!("../../vendor/axe-core/axe.min.js");

/// One rule that failed, with the elements that fail it.
#[derive(Debug, Clone, Deserialize)]
pub struct Violation {
    /// The rule's id, e.g. `color-contrast`.
    pub id: String,
    /// `minor`, `moderate`, `serious` or `critical`.
    pub impact: Option<String>,
    /// What the rule asks for.
    pub help: String,
    /// Where the rule is explained.
    #[serde(rename = "helpUrl")]
    pub help_url: String,
    /// The failing elements.
    pub nodes: Vec<Node>,
}

/// One failing element.
#[derive(Debug, Clone, Deserialize)]
pub struct Node {
    /// CSS selectors leading to it (one per frame level).
    pub target: Vec<Value>,
    /// Its opening tag.
    pub html: String,
    /// What is wrong and how to fix it.
    #[serde(rename = "failureSummary", default)]
    pub failure_summary: Option<String>,
}

impl Violation {
    /// Serious or critical: what the portal must never have.
    pub fn is_blocking(&self) -> bool {
        matches!(self.impact.as_deref(), Some("serious" | "critical"))
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "[{}] {}: {} ({})",
            self.impact.as_deref().unwrap_or("?"),
            self.id,
            self.help,
            self.help_url
        )?;
        for node in &self.nodes {
            let target: Vec<String> = node
                .target
                .iter()
                .map(|t| t.as_str().map_or_else(|| t.to_string(), str::to_owned))
                .collect();
            writeln!(f, "    at {}: {}", target.join(" >> "), node.html)?;
            if let Some(summary) = &node.failure_summary {
                for line in summary.lines() {
                    writeln!(f, "        {line}")?;
                }
            }
        }
        Ok(())
    }
}

impl Browser {
    /// Runs axe-core on the page shown now and returns every violation (all impacts).
    pub async fn axe_violations(&self) -> anyhow::Result<Vec<Violation>> {
        let loaded = self
            .execute("return typeof window.axe === 'object';", vec![])
            .await?;
        if loaded != Value::Bool(true) {
            self.execute(&format!("{AXE_SOURCE}\n;return true;"), vec![])
                .await
                .context("inject axe-core")?;
        }
        let script = "const done = arguments[arguments.length - 1];
            window.axe.run(document, {resultTypes: ['violations']})
              .then(r => done(JSON.stringify(r.violations)), e => done('error: ' + e));";
        let got = self.client.execute_async(script, vec![]).await?;
        let Some(json) = got.as_str() else {
            bail!("axe.run returned {got}");
        };
        if let Some(error) = json.strip_prefix("error: ") {
            bail!("axe.run failed: {error}");
        }
        serde_json::from_str(json).context("axe's violations")
    }

    /// Panics, naming each rule and element, when axe-core finds a serious or critical
    /// violation on the page shown now; `page` names the page in the message.
    pub async fn assert_accessible(&self, page: &str) {
        let viewport = self.viewport().await.map(|v| v.label()).unwrap_or_default();
        let violations = self
            .axe_violations()
            .await
            .unwrap_or_else(|e| panic!("axe-core could not check {page} at {viewport}: {e:#}"));
        let blocking: Vec<String> = violations
            .iter()
            .filter(|v| v.is_blocking())
            .map(ToString::to_string)
            .collect();
        assert!(
            blocking.is_empty(),
            "axe-core: {} serious or critical violation(s) on {page} at {viewport}:\n{}",
            blocking.len(),
            blocking.join("\n")
        );
    }
}
