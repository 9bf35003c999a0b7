//! The web page in a real browser: Debian's Chromium driven through chromedriver (WebDriver),
//! headless, a fresh profile per test. Without chromium and chromedriver these tests are listed as
//! `ignored` (build.rs sets `has_browser` when it finds both), unless `CHATPIPE_REQUIRE_BROWSER=1`
//! (set by `.ci/run`) makes that a build failure.

mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use chatpipe::Server;
use common::process::Killed;
use common::{TestClient, TestServer, WAIT, config_with_moderator, test_config};
use fantoccini::{Client, ClientBuilder, Locator};

const CHROMIUM: &str = "/usr/bin/chromium";

/// A chromedriver process and a browser session on it.
struct Browser {
    client: Client,
    /// chromedriver runs in a process group of its own with the browser it started: dropping
    /// this ends them all, even when a test fails before closing its session.
    _driver: Killed,
    _profile: tempfile::TempDir,
}

/// Where chromedriver is. Only called by tests marked
/// `#[cfg_attr(not(has_browser), ignore = ...)]`, so a missing one is a defect of the test.
fn chromedriver() -> Option<String> {
    let found = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .filter(|_| std::path::Path::new(CHROMIUM).exists());
    assert!(
        found.is_some(),
        "chromium or chromedriver is missing (apt-get install chromium chromium-driver); build.rs found them on the PATH, but not at {CHROMIUM} and /usr/bin/chromedriver"
    );
    found.map(str::to_owned)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    async fn start(driver_path: &str) -> Browser {
        // The WebDriver client's TLS stack needs a process-wide crypto provider; more than one is
        // compiled in (ring for chatpipe's TLS), so name it.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let port = free_port();
        let driver = Killed::group(
            Command::new(driver_path)
                .arg(format!("--port={port}"))
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts"),
        );
        let profile = tempfile::tempdir().unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1100,700",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::rustls()
            .expect("a TLS setup for the WebDriver client")
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a browser session");
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Ends the WebDriver session (chromedriver then closes the browser) and the driver.
    async fn quit(self) {
        let _ = self.client.clone().close().await;
    }

    /// Opens the page at `web` and logs in as `name` (with `password` if given).
    async fn join(&self, web: SocketAddr, name: &str, password: Option<&str>) {
        let c = &self.client;
        c.goto(&format!("http://{web}/")).await.unwrap();
        c.wait()
            .at_most(WAIT)
            .for_element(Locator::Id("name"))
            .await
            .unwrap()
            .send_keys(name)
            .await
            .unwrap();
        if let Some(password) = password {
            c.execute(
                "document.getElementById('password-row').hidden = false",
                vec![],
            )
            .await
            .unwrap();
            c.find(Locator::Id("password"))
                .await
                .unwrap()
                .send_keys(password)
                .await
                .unwrap();
        }
        c.find(Locator::Id("join-button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.wait_for_text("#status", &format!("Connected as {name}"))
            .await;
    }

    /// Opens the page at `web` and waits for the login form.
    async fn open(&self, web: SocketAddr) {
        self.client.goto(&format!("http://{web}/")).await.unwrap();
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Id("name"))
            .await
            .unwrap();
    }

    /// Whether the element with this id is shown (WebDriver's rendering check: `display`,
    /// `visibility`, a size, and the same for its ancestors).
    async fn displayed(&self, id: &str) -> bool {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap()
    }

    /// Waits (bounded by [`WAIT`]) until the element with this id is shown.
    async fn wait_displayed(&self, id: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.displayed(id).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "#{id} was never shown"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text a reader sees on the whole page (`innerText`: hidden parts left out, CSS
    /// capitals applied), lower-cased.
    async fn visible_text(&self) -> String {
        let text = self
            .client
            .execute("return document.body.innerText", vec![])
            .await
            .unwrap();
        text.as_str().unwrap_or_default().to_lowercase()
    }

    /// Types a line into the input and sends it.
    async fn say(&self, text: &str) {
        let input = self.client.find(Locator::Id("input")).await.unwrap();
        input.send_keys(text).await.unwrap();
        input.send_keys("\u{E007}").await.unwrap(); // Enter
    }

    /// The text of the element(s) matching `css`, joined by newlines.
    async fn text_of(&self, css: &str) -> String {
        let mut texts = Vec::new();
        for element in self.client.find_all(Locator::Css(css)).await.unwrap() {
            texts.push(element.text().await.unwrap_or_default());
        }
        texts.join("\n")
    }

    /// Waits (polling the page, bounded by [`WAIT`]) until `css` contains `needle`.
    async fn wait_for_text(&self, css: &str, needle: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = self.text_of(css).await;
            if text.contains(needle) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css} never showed {needle:?}; it shows {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The chat lines (messages) shown, in order, as `from text`.
    async fn messages(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for li in self
            .client
            .find_all(Locator::Css("#messages li.message"))
            .await
            .unwrap()
        {
            let from = li
                .find(Locator::Css(".from"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let text = li
                .find(Locator::Css(".text"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            lines.push(format!("{from} {text}"));
        }
        lines
    }
}

/// Two browser users and one `nc` user in one room see each other's lines, in the same order.
/// Saves a screenshot of the page (target/tmp/screenshots/web-page.png).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_browser),
    ignore = "needs chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn two_browsers_and_nc_share_a_room_in_one_order() {
    let Some(driver) = chromedriver() else { return };
    let (server, web) = TestServer::start_with_web(Server::new(test_config())).await;
    let ann = Browser::start(&driver).await;
    let ben = Browser::start(&driver).await;
    ann.join(web, "ann", None).await;
    ben.join(web, "ben", None).await;
    let mut nc = server.login("nick").await;
    ann.wait_for_text("#members", "nick").await;
    for n in 0..3 {
        ann.say(&format!("ann {n}")).await;
        ben.say(&format!("ben {n}")).await;
        nc.send(&format!("nick {n}")).await;
    }
    // The chat lines nc saw, `FROM: TEXT`, which is also how the page's `from` and `text`
    // spans read together.
    let mut seen_by_nc = Vec::new();
    while seen_by_nc.len() < 9 {
        let line = nc.next_line().await.expect("nc stays connected");
        if line.contains(": ") && !line.starts_with("SERVER:") {
            seen_by_nc.push(line);
        }
    }
    for browser in [&ann, &ben] {
        browser.wait_for_text("#messages", "nick 2").await;
        browser.wait_for_text("#messages", "ann 2").await;
        browser.wait_for_text("#messages", "ben 2").await;
        let shown = browser.messages().await;
        assert_eq!(shown, seen_by_nc, "the browser and nc saw different orders");
    }
    let png = ann.client.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("web-page.png"), png).unwrap();
    ann.quit().await;
    ben.quit().await;
    server.shutdown().await;
}

/// A line that looks like HTML is shown as text and runs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_browser),
    ignore = "needs chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn html_in_a_line_stays_text() {
    let Some(driver) = chromedriver() else { return };
    let (server, web) = TestServer::start_with_web(Server::new(test_config())).await;
    let viewer = Browser::start(&driver).await;
    viewer.join(web, "viewer", None).await;
    viewer
        .client
        .execute(
            "window.__alerted = false; window.alert = () => { window.__alerted = true; };",
            vec![],
        )
        .await
        .unwrap();
    let mut nc = server.login("mallory").await;
    nc.send("<img src=x onerror=alert(1)><b>bold</b>").await;
    viewer
        .wait_for_text("#messages", "<img src=x onerror=alert(1)><b>bold</b>")
        .await;
    let injected = viewer
        .client
        .execute(
            "return [document.querySelectorAll('#messages img, #messages b').length, window.__alerted]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(injected, serde_json::json!([0, false]));
    viewer.quit().await;
    server.shutdown().await;
}

/// A moderator in a browser kicks a browser user from the member menu; the kicked page says why
/// and does not reconnect by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_browser),
    ignore = "needs chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn a_moderator_kicks_from_the_member_menu() {
    let Some(driver) = chromedriver() else { return };
    let config = config_with_moderator();
    let (server, web) = TestServer::start_with_web(Server::new(config)).await;
    let moderator = Browser::start(&driver).await;
    let victim = Browser::start(&driver).await;
    moderator.join(web, "mod", Some("modpass12")).await;
    victim.join(web, "bob", None).await;
    moderator.wait_for_text("#members", "bob").await;
    moderator
        .client
        .find(Locator::Css("#members button[data-name='bob']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let kick = moderator
        .client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//div[@id='member-menu']/button[starts-with(., 'Kick bob')]",
        ))
        .await
        .unwrap();
    kick.click().await.unwrap();
    victim
        .wait_for_text(
            "#status",
            "You were kicked by mod: kicked from the web page",
        )
        .await;
    moderator
        .wait_for_text("#messages", "bob was kicked by mod")
        .await;
    moderator.quit().await;
    victim.quit().await;
    server.shutdown().await;
}

/// The server restarts: the page reconnects by itself, says so, and chat works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_browser),
    ignore = "needs chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn the_page_reconnects_after_a_restart() {
    let Some(driver) = chromedriver() else { return };
    let web_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = web_listener.local_addr().unwrap();
    let server = TestServer::start(Server::new(test_config()).web_listener(web_listener)).await;
    let page = Browser::start(&driver).await;
    page.join(web, "rita", None).await;
    server.shutdown().await;
    page.wait_for_text("#status", "Reconnecting").await;
    // The same web port again, as a restarted server would have.
    let web_listener = tokio::net::TcpListener::bind(web).await.unwrap();
    let server = TestServer::start(Server::new(test_config()).web_listener(web_listener)).await;
    page.wait_for_text("#status", "Reconnected as rita").await;
    let mut nc: TestClient = server.login("nick").await;
    page.say("back again").await;
    nc.expect_contains("rita: back again").await;
    page.quit().await;
    server.shutdown().await;
}

/// A moderator works the queue from the page's panel: a held line appears live, Approve
/// delivers it to the room, Deny drops the next one and tells its sender; the audit log in the
/// panel shows both. Saves a screenshot of the panel (target/tmp/screenshots/moderator-panel.png).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_browser),
    ignore = "needs chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn a_moderator_approves_and_denies_from_the_panel() {
    let Some(driver) = chromedriver() else { return };
    let config = config_with_moderator();
    let dir = common::dir_with(&[("review.toml", "action = \"hold\"\nwords = [\"darn\"]\n")]);
    let server = Server::new(config).filters_dir(dir.path()).unwrap();
    let (server, web) = TestServer::start_with_web(server).await;
    let moderator = Browser::start(&driver).await;
    moderator.join(web, "mod", Some("modpass12")).await;
    moderator
        .wait_for_text("#held-list", "Nothing is waiting.")
        .await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.expect("bob has joined the chat").await;
    alice.send("darn it").await;
    alice
        .expect("SERVER: Your message is held for review by a moderator.")
        .await;
    moderator.wait_for_text("#held-list", "darn it").await;
    moderator
        .client
        .find(Locator::XPath(
            "//ul[@id='held-list']/li[@data-id='1']/button[.='Approve']",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    bob.expect("alice: darn it").await;
    moderator
        .wait_for_text("#held-list", "Nothing is waiting.")
        .await;
    alice.send("darn again").await;
    moderator.wait_for_text("#held-list", "darn again").await;
    bob.send("/report alice swearing").await;
    moderator.wait_for_text("#report-list", "swearing").await;
    let png = moderator.client.screenshot().await.unwrap();
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    std::fs::write(shots.join("moderator-panel.png"), png).unwrap();
    moderator
        .client
        .find(Locator::XPath(
            "//ul[@id='held-list']/li[@data-id='2']/button[.='Deny']",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    alice
        .expect_contains("Your message held for review was not approved")
        .await;
    moderator
        .wait_for_text("#audit-list", "mod deny alice")
        .await;
    moderator
        .wait_for_text("#audit-list", "mod approve alice")
        .await;
    moderator.quit().await;
    server.shutdown().await;
}

/// The login screen is the form alone: the chat layout (`#chat`, a grid in the style sheet)
/// stays hidden until the server has taken the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_screen_shows_only_the_form() {
    let Some(driver) = chromedriver() else { return };
    let (server, web) = TestServer::start_with_web(Server::new(test_config())).await;
    let page = Browser::start(&driver).await;
    page.open(web).await;
    assert!(page.displayed("login").await, "the login form is hidden");
    assert!(
        !page.displayed("chat").await,
        "the chat layout shows under the login form"
    );
    let text = page.visible_text().await;
    for part in ["rooms", "members", "held for review"] {
        assert!(
            !text.contains(part),
            "the login screen shows {part:?}: {text:?}"
        );
    }
    page.join(web, "lena", None).await;
    assert!(page.displayed("chat").await, "the chat layout is hidden");
    assert!(!page.displayed("login").await, "the login form still shows");
    page.quit().await;
    server.shutdown().await;
}

/// The moderation panel is for moderators: a guest sees none of its headings, a moderator
/// sees all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_moderators_see_the_moderation_panel() {
    let Some(driver) = chromedriver() else { return };
    let (server, web) = TestServer::start_with_web(Server::new(config_with_moderator())).await;
    let guest = Browser::start(&driver).await;
    guest.join(web, "gus", None).await;
    assert!(
        !guest.displayed("mod-panel").await,
        "a guest sees the moderation panel"
    );
    let text = guest.visible_text().await;
    for heading in ["held for review", "reports", "audit log"] {
        assert!(
            !text.contains(heading),
            "a guest sees {heading:?}: {text:?}"
        );
    }
    let moderator = Browser::start(&driver).await;
    moderator.join(web, "mod", Some("modpass12")).await;
    moderator.wait_displayed("mod-panel").await;
    let text = moderator.visible_text().await;
    for heading in ["held for review", "reports", "audit log"] {
        assert!(
            text.contains(heading),
            "the moderator does not see {heading:?}: {text:?}"
        );
    }
    guest.quit().await;
    moderator.quit().await;
    server.shutdown().await;
}

/// A registered name typed without its password: the page shows the password field and the
/// status line says what it waits for (it used to keep saying "Connecting…").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_line_asks_for_the_password() {
    let Some(driver) = chromedriver() else { return };
    let (server, web) = TestServer::start_with_web(Server::new(config_with_moderator())).await;
    let page = Browser::start(&driver).await;
    page.open(web).await;
    let c = &page.client;
    c.find(Locator::Id("name"))
        .await
        .unwrap()
        .send_keys("mod")
        .await
        .unwrap();
    c.find(Locator::Id("join-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The page shows the field and sets the status line in one step, on the server's answer.
    page.wait_displayed("password-row").await;
    let status = page.text_of("#status").await;
    assert!(
        !status.contains("Connecting"),
        "the status line says {status:?} while the page asks for a password"
    );
    assert!(
        status.contains("password for mod"),
        "the status line says {status:?}"
    );
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("modpass12")
        .await
        .unwrap();
    c.find(Locator::Id("join-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page.wait_for_text("#status", "Connected as mod").await;
    page.quit().await;
    server.shutdown().await;
}

/// After a reconnect the chat log shows no protocol greeting (`Welcome to chatpipe! Send
/// {"type":"hello",...}`): that line is for hand-written clients, and the page has already
/// answered it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_shows_no_protocol_greeting() {
    let Some(driver) = chromedriver() else { return };
    let web_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = web_listener.local_addr().unwrap();
    let server = TestServer::start(Server::new(test_config()).web_listener(web_listener)).await;
    let page = Browser::start(&driver).await;
    page.join(web, "remy", None).await;
    server.shutdown().await;
    page.wait_for_text("#status", "Reconnecting").await;
    let web_listener = tokio::net::TcpListener::bind(web).await.unwrap();
    let server = TestServer::start(Server::new(test_config()).web_listener(web_listener)).await;
    // The greeting comes before the welcome, so once the status line says so it has been seen.
    page.wait_for_text("#status", "Reconnected as remy").await;
    let log = page.text_of("#messages").await;
    assert!(
        !log.contains("Welcome to chatpipe") && !log.contains("\"type\":\"hello\""),
        "the chat log shows the protocol greeting: {log:?}"
    );
    page.quit().await;
    server.shutdown().await;
}
