//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`): opens a page, runs
//! JavaScript in it, and takes screenshots at a fixed viewport. Without the browser a test is skipped, except
//! under `CI=true`, where that is a failure.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use super::lb::free_port;
use super::procs::Guard;

/// The viewport every page is shown at.
pub const VIEWPORT: (u32, u32) = (1280, 800);

/// A running chromedriver with one browser session; both end when dropped.
pub struct Browser {
    driver: Guard,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium; `None` (with a note on stderr) when they are not installed
    /// and CI is not set.
    pub async fn start() -> Option<Browser> {
        let (Some(chromium), Some(chromedriver)) = (find("chromium"), find("chromedriver")) else {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(
                !ci,
                "chromium and chromedriver are required under CI=true (apt-get install chromium chromium-driver)"
            );
            eprintln!("SKIPPED: chromium or chromedriver not installed (apt-get install chromium chromium-driver)");
            return None;
        };
        let port = free_port();
        let driver = Guard(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver"),
        );
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not answer on {base} in 20s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ]
        .map(String::from)
        .into_iter()
        .chain([
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={},{}", VIEWPORT.0, VIEWPORT.1),
        ])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let mut browser = Browser { driver, base, session: String::new(), http, _profile: profile };
        let created = browser.call(reqwest::Method::POST, "/session", caps).await;
        browser.session = created["sessionId"].as_str().expect("a session id").to_string();
        // The window size includes the browser's frame: set the page's viewport itself.
        let (width, height) = VIEWPORT;
        browser
            .cdp(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
            )
            .await;
        Some(browser)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let reply = self
            .http
            .request(method, format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        let status = reply.status();
        let v: Value = reply.json().await.unwrap_or_else(|e| panic!("WebDriver {path}: not JSON: {e}"));
        assert!(status.is_success(), "WebDriver {path}: {status} {v}");
        v["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.call(reqwest::Method::POST, &self.session_path("/goog/cdp/execute"), json!({"cmd": cmd, "params": params}))
            .await
    }

    /// Loads `url` and waits for its `load` event.
    pub async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, &self.session_path("/url"), json!({"url": url})).await;
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub async fn eval(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, &self.session_path("/execute/sync"), json!({"script": script, "args": []}))
            .await
    }

    /// Evaluates `script` every 200 ms until `done` accepts its value, for at most `within`; the last value.
    pub async fn wait_for(&self, what: &str, script: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.eval(script).await;
            if done(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "the page did not show {what} within {within:?}; it shows {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A PNG of the viewport, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let shot = self.cdp("Page.captureScreenshot", json!({"format": "png"})).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot is base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("artifact directory");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session quits Chromium; then the driver's process group (the driver and whatever Chromium
        // left behind) is killed.
        if !self.session.is_empty() {
            let addr = self.base.trim_start_matches("http://").to_string();
            let _ = super::procs::http(&addr, "DELETE", &self.session_path(""), "");
        }
        let group = format!("-{}", self.driver.pid());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        self.driver.kill();
    }
}

/// Where tests keep what they produce for people to look at: `target/test-artifacts/`.
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"));
    target.join("test-artifacts")
}
