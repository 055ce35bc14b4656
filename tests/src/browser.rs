//! A real browser for the portal's acceptance tests and screenshots: Debian's Chromium, headless,
//! driven over WebDriver by `chromedriver` (started here on a free loopback port) through the
//! `fantoccini` client.
//!
//! [`Browser::launch`] starts one driver and one browser with a fresh profile directory (no
//! cookies, cache or storage from anything before); dropping the [`Browser`] kills both. Pages
//! are checked with axe-core ([`Browser::assert_accessible`], see [`axe`]) and photographed with
//! [`Browser::save_screenshot`]. HTTP status codes are read from inside the page with `fetch`
//! ([`Browser::status_of`]), so they travel with the browser's own cookies.
//!
//! When Chromium or chromedriver is missing, [`Browser::launch`] panics under `CI=true` (a CI
//! run must never pass by skipping its browser tests) and otherwise returns `None` after saying
//! how to install them, so a developer without them can still run the rest of the suite.

pub mod axe;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// Desktop viewport of the checks and screenshots (CSS pixels).
pub const DESKTOP: Viewport = Viewport {
    width: 1280,
    height: 800,
};
/// Phone viewport (an iPhone 12-14 in portrait, CSS pixels).
pub const PHONE: Viewport = Viewport {
    width: 390,
    height: 844,
};

/// A viewport size in CSS pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewport {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

impl Viewport {
    /// "1280x800".
    pub fn label(self) -> String {
        format!("{}x{}", self.width, self.height)
    }
}

/// Debian's Chromium binary.
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long a page may take to load, or an element to appear.
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long chromedriver may take to say which port it listens on.
const DRIVER_START: Duration = Duration::from_secs(20);

/// Chromium's switches. Headless and sandbox-free (the tests run as root); every background
/// connection of the browser's own (updates, sync, QUIC probes) off, because this machine's
/// network refuses connections out and the browser would stall on them.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--lang=en-US",
    // The player test calls play() from WebDriver, with no user gesture.
    "--autoplay-policy=no-user-gesture-required",
];

/// A cookie as the browser stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
    /// `Path` attribute.
    pub path: Option<String>,
    /// `Domain` (the host the cookie is bound to).
    pub domain: Option<String>,
    /// `Secure`.
    pub secure: bool,
    /// `HttpOnly`.
    pub http_only: bool,
    /// `SameSite` ("Lax", "Strict", "None").
    pub same_site: Option<String>,
}

/// A headless Chromium with its own chromedriver and profile directory.
pub struct Browser {
    client: Client,
    /// The watchdog running chromedriver; closing `watchdog_stdin` ends both and Chromium.
    watchdog: Child,
    watchdog_stdin: Option<ChildStdin>,
    _profile: tempfile::TempDir,
}

/// Whether the browser tests must run (CI) or may be skipped when the browser is missing.
fn browser_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The chromedriver on `PATH`, if any.
fn chromedriver() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromedriver"))
        .find(|candidate| candidate.is_file())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium at the [`DESKTOP`] viewport. `None` when
    /// either is not installed and the run is not CI (a message says how to install them);
    /// panics when they are missing under `CI=true` or fail to start.
    pub async fn launch() -> Option<Browser> {
        let driver = chromedriver();
        if driver.is_none() || !Path::new(CHROMIUM).is_file() {
            let message = "Debian's chromium and chromium-driver are not installed \
                           (scripts/test.sh installs them: apt-get install chromium chromium-driver)";
            assert!(!browser_required(), "CI=true: {message}");
            // Straight to the process's stderr: the test harness captures `eprintln!` of a
            // passing test, and a skip must be seen.
            let _ = writeln!(std::io::stderr(), "skipping the browser tests: {message}");
            return None;
        }
        let driver = driver.expect("checked above");
        Some(
            Self::start(&driver)
                .await
                .unwrap_or_else(|e| panic!("the browser did not start: {e:#}")),
        )
    }

    async fn start(driver_path: &Path) -> anyhow::Result<Browser> {
        let (watchdog, watchdog_stdin, port) = start_driver(driver_path).await?;
        let profile = tempfile::tempdir().context("profile directory")?;
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!(
            "--window-size={},{}",
            DESKTOP.width, DESKTOP.height
        ));
        let capabilities = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object literal")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .context("new WebDriver session")?;
        client
            .update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
                Some(PAGE_TIMEOUT),
                Some(PAGE_TIMEOUT),
                None,
            ))
            .await
            .context("timeouts")?;
        let browser = Browser {
            client,
            watchdog,
            watchdog_stdin: Some(watchdog_stdin),
            _profile: profile,
        };
        browser.set_viewport(DESKTOP).await?;
        Ok(browser)
    }

    /// The WebDriver client, for what the helpers here do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("open {url}"))
    }

    /// The address of the page shown now.
    pub async fn url(&self) -> anyhow::Result<String> {
        Ok(self.client.current_url().await?.to_string())
    }

    /// The visible text of the whole page.
    pub async fn text(&self) -> anyhow::Result<String> {
        let body = self.client.find(Locator::Css("body")).await?;
        Ok(body.text().await?)
    }

    /// The page's HTML as the browser holds it now.
    pub async fn html(&self) -> anyhow::Result<String> {
        Ok(self.client.source().await?)
    }

    /// The first element matching the CSS selector, waiting up to 20 s for it.
    pub async fn find(&self, css: &str) -> anyhow::Result<fantoccini::elements::Element> {
        self.client
            .wait()
            .at_most(PAGE_TIMEOUT)
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("no element matches {css:?}"))
    }

    /// Every element matching the CSS selector now (possibly none).
    pub async fn find_all(&self, css: &str) -> anyhow::Result<Vec<fantoccini::elements::Element>> {
        Ok(self.client.find_all(Locator::Css(css)).await?)
    }

    /// Replaces the value of the field matching `css` with `value` (typed, as a person would).
    pub async fn fill(&self, css: &str, value: &str) -> anyhow::Result<()> {
        let field = self.find(css).await?;
        field.clear().await?;
        field.send_keys(value).await?;
        Ok(())
    }

    /// Clicks the element matching `css` (a link or a form's button) and waits until the page
    /// it leads to has replaced the one shown now and finished loading. A form submission
    /// navigates after the click returns, so the old document is marked first and the wait
    /// lasts until a document without the mark is complete.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let element = self.find(css).await?;
        self.client
            .execute("window.__neurosphere_old_page = true; return true;", vec![])
            .await?;
        element.click().await?;
        self.wait_new_page()
            .await
            .with_context(|| format!("after clicking {css:?}"))
    }

    /// Waits until the window shows a document other than the marked one, fully loaded.
    async fn wait_new_page(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
        loop {
            // While the old document unloads, scripts may fail to run: try again.
            let state = self
                .client
                .execute(
                    "return window.__neurosphere_old_page ? 'old' : document.readyState",
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            if state == "complete" {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no new page loaded within {PAGE_TIMEOUT:?} (state {state})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `script` in the page (the body of a function; `arguments` holds `args`).
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        Ok(self.client.execute(script, args).await?)
    }

    /// The HTTP status of a GET of `path` (relative to the page shown now), fetched from inside
    /// the page with its cookies, without following redirects (a redirect reads as 0, the
    /// status of an opaque redirect in `fetch`).
    pub async fn status_of(&self, path: &str) -> anyhow::Result<u16> {
        let script = "const done = arguments[arguments.length - 1];
            fetch(arguments[0], {credentials: 'same-origin', redirect: 'manual'})
              .then(r => done(r.status), e => done('error: ' + e));";
        let got = self.client.execute_async(script, vec![json!(path)]).await?;
        got.as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .with_context(|| format!("fetch {path}: {got}"))
    }

    /// Resizes the window so that the page's viewport is exactly `viewport` (the window's own
    /// frame, if any, is measured and added).
    pub async fn set_viewport(&self, viewport: Viewport) -> anyhow::Result<()> {
        self.client
            .set_window_size(viewport.width, viewport.height)
            .await?;
        let inner = self
            .client
            .execute("return [window.innerWidth, window.innerHeight]", vec![])
            .await?;
        let (w, h) = (inner[0].as_u64(), inner[1].as_u64());
        let (Some(w), Some(h)) = (w, h) else {
            bail!("window size unreadable: {inner}");
        };
        let (w, h) = (u32::try_from(w)?, u32::try_from(h)?);
        if (w, h) != (viewport.width, viewport.height) {
            let width = viewport.width + viewport.width.saturating_sub(w);
            let height = viewport.height + viewport.height.saturating_sub(h);
            self.client.set_window_size(width, height).await?;
        }
        Ok(())
    }

    /// The viewport's size now.
    pub async fn viewport(&self) -> anyhow::Result<Viewport> {
        let inner = self
            .client
            .execute("return [window.innerWidth, window.innerHeight]", vec![])
            .await?;
        let side = |i: usize| {
            inner[i]
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .with_context(|| format!("window size unreadable: {inner}"))
        };
        Ok(Viewport {
            width: side(0)?,
            height: side(1)?,
        })
    }

    /// Whether the page is wider than the viewport (a horizontal scroll bar on a phone).
    pub async fn overflows_horizontally(&self) -> anyhow::Result<bool> {
        let wider = self
            .client
            .execute(
                "return document.documentElement.scrollWidth > window.innerWidth",
                vec![],
            )
            .await?;
        Ok(wider == Value::Bool(true))
    }

    /// The elements reaching past the viewport's right edge outside any scrolling or clipping
    /// box (at most 10, described by tag, id and classes), to say why a page overflows.
    pub async fn elements_past_the_right_edge(&self) -> anyhow::Result<Vec<String>> {
        let got = self
            .execute(
                "const w = window.innerWidth; const out = [];
                 for (const e of document.querySelectorAll('body *')) {
                   const r = e.getBoundingClientRect();
                   let clipped = false;
                   for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
                     const style = getComputedStyle(a);
                     // An absolutely positioned element escapes the clipping of a box that
                     // is not its containing block.
                     if (style.overflowX !== 'visible' &&
                         (getComputedStyle(e).position !== 'absolute' || style.position !== 'static')) {
                       clipped = true; break;
                     }
                   }
                   if (r.right > w + 1 && !clipped) {
                     out.push(e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
                       (typeof e.className === 'string' && e.className ?
                         '.' + e.className.trim().split(/\\s+/).join('.') : '') +
                       ' (right edge at ' + Math.round(r.right) + ' px)');
                   }
                 }
                 return out.slice(0, 10);",
                vec![],
            )
            .await?;
        Ok(serde_json::from_value(got)?)
    }

    /// Writes a PNG of the viewport to `path` (creating its directory).
    pub async fn save_screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let png = self.client.screenshot().await?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        std::fs::write(path, png).with_context(|| format!("write {}", path.display()))
    }

    /// The browser's cookies for the page shown now, with their attributes as the browser
    /// stored them.
    pub async fn cookies(&self) -> anyhow::Result<Vec<Cookie>> {
        let all = self.client.get_all_cookies().await?;
        Ok(all
            .iter()
            .map(|c| Cookie {
                name: c.name().to_owned(),
                value: c.value().to_owned(),
                path: c.path().map(str::to_owned),
                domain: c.domain().map(str::to_owned),
                secure: c.secure().unwrap_or(false),
                http_only: c.http_only().unwrap_or(false),
                same_site: c.same_site().map(|s| s.to_string()),
            })
            .collect())
    }

    /// Replaces the cookie `name` of the site shown now with `name=value` for `path`, as a
    /// script of the page would set it (e.g. to replay an ended session's cookie, or plant one
    /// before sign-in): the server sees it exactly as one it had set. (Chromedriver refuses to
    /// add cookies for a bare IP address host, hence the script.)
    pub async fn set_cookie(&self, name: &str, value: &str, path: &str) -> anyhow::Result<()> {
        self.client.delete_cookie(name).await?;
        self.execute(
            "document.cookie = arguments[0] + '=' + arguments[1] + '; path=' + arguments[2] + \
             '; SameSite=Lax'; return true;",
            vec![json!(name), json!(value), json!(path)],
        )
        .await?;
        Ok(())
    }

    /// Ends the browser session, then Chromium's and chromedriver's processes, and waits (at
    /// most 5 s) until they are gone.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        drop(self.watchdog_stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.watchdog.wait()).await;
    }
}

/// Runs chromedriver (`"$@"`) in the watchdog's own process group and, once the watchdog's
/// stdin reaches end of file, ends the whole group: chromedriver, Chromium and every helper
/// process of Chromium's. Its stdin is a pipe that only the test process holds, so the group ends
/// when the [`Browser`] is closed or dropped and also when the test process dies in any way
/// (a panic, Ctrl-C, SIGKILL), even though a shared browser in a static is never dropped.
const WATCHDOG_SH: &str = r#"
"$@" </dev/null &
cat >/dev/null
kill -TERM 0
"#;

/// Starts chromedriver under [`WATCHDOG_SH`] on a port of its choosing (`--port=0`) and reads
/// the port from its start-up line. Its output goes on being read (and dropped) so it never
/// blocks on a full pipe.
async fn start_driver(path: &Path) -> anyhow::Result<(Child, ChildStdin, u16)> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG_SH)
        .arg("neurosphere-browser-watchdog")
        .arg(path)
        .args(["--port=0", "--log-level=WARNING"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("start {} under sh", path.display()))?;
    let stdin = child.stdin.take().context("the watchdog's stdin")?;
    let stdout = child.stdout.take().context("chromedriver's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let port = tokio::time::timeout(DRIVER_START, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line
                .split_once("started successfully on port ")
                .map(|(_, r)| r)
            {
                let port: u16 = rest.trim_end_matches('.').trim().parse()?;
                return Ok(port);
            }
        }
        bail!("chromedriver exited before saying its port")
    })
    .await
    .context("chromedriver did not start in time")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, stdin, port))
}
