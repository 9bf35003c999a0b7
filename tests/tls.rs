//! TLS on every door: Rust clients and `openssl s_client` on the text, IRC and web doors chat
//! with a plain-text client in one room; a new certificate is loaded while TLS clients stay
//! connected; bad certificate files are one clear error; a stalled handshake and plain text sent
//! to a TLS port are dropped.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chatpipe::Server;
use chatpipe::net::tls::{TlsCertificates, generate_self_signed};
use common::{TestServer, WAIT, test_config};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// A server with a plain and a TLS listener; the TLS address and the certificate directory.
async fn start() -> (TestServer, SocketAddr, tempfile::TempDir, TlsCertificates) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = generate_self_signed("localhost", dir.path()).unwrap();
    let certificates = TlsCertificates::load(&cert, &key).unwrap();
    let tls = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_addr = tls.local_addr().unwrap();
    let mut config = test_config();
    config.server.handshake_timeout = Duration::from_millis(500);
    let server = Server::new(config).tls_listener(tls, certificates.clone());
    (TestServer::start(server).await, tls_addr, dir, certificates)
}

/// A TLS client that trusts the certificate in `cert`.
async fn tls_connect(
    addr: SocketAddr,
    cert: &Path,
) -> std::io::Result<BufReader<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>> {
    tls_connect_as(addr, cert, "localhost").await
}

/// A TLS client that trusts the certificate in `cert` and expects it to be for `name` (a host
/// name or an IP address).
async fn tls_connect_as(
    addr: SocketAddr,
    cert: &Path,
    name: &str,
) -> std::io::Result<BufReader<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    Ok(BufReader::new(connector.connect(name, tcp).await?))
}

async fn line(reader: &mut (impl AsyncBufReadExt + Unpin)) -> String {
    let mut line = String::new();
    tokio::time::timeout(WAIT, reader.read_line(&mut line))
        .await
        .expect("a line in time")
        .unwrap();
    line.trim_end().to_owned()
}

async fn expect_line(reader: &mut (impl AsyncBufReadExt + Unpin), expected: &str) {
    loop {
        let got = line(reader).await;
        assert!(
            !got.is_empty(),
            "end of stream while waiting for {expected:?}"
        );
        if got == expected {
            return;
        }
    }
}

/// A TLS client and a plain client chat in one room; then the certificate is replaced and
/// reloaded while the TLS client stays connected; new clients get the new certificate.
#[tokio::test]
async fn chat_over_tls_and_a_reload_drops_nobody() {
    let (server, tls_addr, dir, certificates) = start().await;
    let cert = dir.path().join("cert.pem");
    let mut secure = tls_connect(tls_addr, &cert).await.unwrap();
    expect_line(
        &mut secure,
        "SERVER: Welcome to chatpipe! Please enter your username:",
    )
    .await;
    secure.get_mut().write_all(b"alice\n").await.unwrap();
    expect_line(&mut secure, "alice has joined the chat").await;
    let mut plain = server.login("bob").await;
    expect_line(&mut secure, "bob has joined the chat").await;
    secure
        .get_mut()
        .write_all(b"hello over TLS\n")
        .await
        .unwrap();
    plain.expect("alice: hello over TLS").await;
    plain.send("hello in clear").await;
    plain.expect("bob: hello in clear").await;
    expect_line(&mut secure, "bob: hello in clear").await;

    // A new certificate (a new key too) in the same files, reloaded.
    let old = std::fs::read(&cert).unwrap();
    generate_self_signed("localhost", dir.path()).unwrap();
    assert_ne!(old, std::fs::read(&cert).unwrap());
    certificates.reload().unwrap();
    secure.get_mut().write_all(b"still here\n").await.unwrap();
    plain.expect("alice: still here").await;
    // A client that trusts only the old certificate is refused; one with the new one gets in.
    let old_cert = dir.path().join("old.pem");
    std::fs::write(&old_cert, old).unwrap();
    assert!(tls_connect(tls_addr, &old_cert).await.is_err());
    let mut fresh = tls_connect(tls_addr, &cert).await.unwrap();
    expect_line(
        &mut fresh,
        "SERVER: Welcome to chatpipe! Please enter your username:",
    )
    .await;

    // A bad new certificate keeps the old one in force.
    std::fs::write(&cert, "not a certificate").unwrap();
    let error = certificates.reload().unwrap_err().to_string();
    assert!(error.contains("cert.pem"), "{error}");
    assert!(
        tls_connect(tls_addr, &dir.path().join("old.pem"))
            .await
            .is_err()
    );
    drop((secure, fresh));
    server.shutdown().await;
}

/// A client that opens a connection and never finishes its TLS handshake is dropped at the
/// handshake timeout; plain text sent to the TLS port is dropped too; the server goes on.
#[tokio::test]
async fn stalled_handshakes_and_plain_text_are_dropped() {
    let (server, tls_addr, dir, _certificates) = start().await;
    let mut stalled = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, stalled.read(&mut buf))
        .await
        .expect("dropped within the handshake timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    let mut plain = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    plain.write_all(b"alice\nhello\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut answer))
        .await
        .expect("closed");
    assert!(
        !String::from_utf8_lossy(&answer).contains("joined"),
        "plain text never logs in on the TLS port"
    );
    // The TLS port still serves.
    let mut secure = tls_connect(tls_addr, &dir.path().join("cert.pem"))
        .await
        .unwrap();
    expect_line(
        &mut secure,
        "SERVER: Welcome to chatpipe! Please enter your username:",
    )
    .await;
    server.shutdown().await;
}

/// A missing file, a key that does not belong to the certificate, and an expired certificate are
/// each one error naming the file.
#[test]
fn bad_certificate_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = generate_self_signed("localhost", dir.path()).unwrap();
    let missing = TlsCertificates::load(&dir.path().join("nope.pem"), &key)
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.pem: cannot read"), "{missing}");

    let other = tempfile::tempdir().unwrap();
    let (_, other_key) = generate_self_signed("localhost", other.path()).unwrap();
    let mismatch = TlsCertificates::load(&cert, &other_key)
        .unwrap_err()
        .to_string();
    assert!(
        mismatch.contains("key.pem: the key does not belong to the certificate in"),
        "{mismatch}"
    );

    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let signing = rcgen::KeyPair::generate().unwrap();
    let expired = params.self_signed(&signing).unwrap();
    let expired_cert = dir.path().join("expired.pem");
    let expired_key = dir.path().join("expired-key.pem");
    std::fs::write(&expired_cert, expired.pem()).unwrap();
    std::fs::write(&expired_key, signing.serialize_pem()).unwrap();
    let error = TlsCertificates::load(&expired_cert, &expired_key)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("expired.pem: the certificate expired on"),
        "{error}"
    );

    // The binary stops at start-up with one line.
    let run = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nlisten_tls = \"127.0.0.1:0\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        expired_cert.display(),
        expired_key.display()
    );
    let (code, out) = common::binary::run_to_exit_with(run.path(), &config, &[]);
    assert_eq!(code, Some(1), "{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("chatpipe:")).collect();
    assert_eq!(errors.len(), 1, "{out}");
    assert!(errors[0].contains("the certificate expired on"), "{out}");
}

/// `openssl s_client` connected to `addr`, trusting the certificate in `dir`: its stdin, its
/// stdout, and the process (killed when dropped).
fn s_client(
    openssl: &Path,
    addr: SocketAddr,
    dir: &Path,
) -> (
    tokio::process::ChildStdin,
    BufReader<tokio::process::ChildStdout>,
    tokio::process::Child,
) {
    let mut child = tokio::process::Command::new(openssl)
        .args([
            "s_client",
            "-quiet",
            "-verify_return_error",
            "-servername",
            "localhost",
        ])
        .arg("-connect")
        .arg(addr.to_string())
        .arg("-CAfile")
        .arg(dir.join("cert.pem"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (stdin, stdout, child)
}

/// A real TLS client from outside the project, on every door: `openssl s_client` logs in on the
/// text and IRC doors and chats with a plain client, and fetches the page over HTTPS. Skipped
/// (listed as `ignored`) without openssl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_openssl), ignore = "needs openssl: apt-get install openssl")]
async fn openssl_s_client_chats() {
    let Some(openssl) = common::required_tool(
        "openssl",
        "CHATPIPE_REQUIRE_OPENSSL",
        "apt-get install openssl",
    ) else {
        return;
    };
    let (server, doors, dir, _certificates) = start_every_door().await;
    let mut plain = server.login("bob").await;

    let (mut stdin, mut stdout, _text) = s_client(&openssl, doors.text, dir.path());
    expect_line(
        &mut stdout,
        "SERVER: Welcome to chatpipe! Please enter your username:",
    )
    .await;
    stdin.write_all(b"carol\n").await.unwrap();
    expect_line(&mut stdout, "carol has joined the chat").await;
    plain.expect("carol has joined the chat").await;
    stdin.write_all(b"hi from openssl\n").await.unwrap();
    plain.expect("carol: hi from openssl").await;
    plain.send("hi back").await;
    expect_line(&mut stdout, "bob: hi back").await;

    let (mut stdin, mut stdout, _irc) = s_client(&openssl, doors.irc, dir.path());
    stdin
        .write_all(b"NICK dora\r\nUSER dora 0 * :d\r\nPRIVMSG #lobby :hi from irc over openssl\r\n")
        .await
        .unwrap();
    expect_line(&mut stdout, ":dora!dora@chatpipe JOIN #lobby").await;
    plain
        .expect_contains("dora: hi from irc over openssl")
        .await;

    let (mut stdin, mut stdout, _web) = s_client(&openssl, doors.web, dir.path());
    stdin
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let status = line(&mut stdout).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut page = String::new();
    let _ = tokio::time::timeout(WAIT, stdout.read_to_string(&mut page)).await;
    assert!(page.contains("chatpipe"), "{page}");
    server.shutdown().await;
}

/// The TLS addresses of a server with every door on TLS.
struct TlsDoors {
    text: SocketAddr,
    irc: SocketAddr,
    web: SocketAddr,
}

/// A server with the text protocol in clear (`server.addr`) and over TLS, IRC over TLS, and the
/// web door over HTTPS.
async fn start_every_door() -> (TestServer, TlsDoors, tempfile::TempDir, TlsCertificates) {
    start_every_door_with(test_config()).await
}

/// [`start_every_door`] with `config`.
async fn start_every_door_with(
    mut config: chatpipe::Config,
) -> (TestServer, TlsDoors, tempfile::TempDir, TlsCertificates) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = generate_self_signed("localhost", dir.path()).unwrap();
    let certificates = TlsCertificates::load(&cert, &key).unwrap();
    let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
    let (text, irc, web) = (
        bind().await.unwrap(),
        bind().await.unwrap(),
        bind().await.unwrap(),
    );
    let doors = TlsDoors {
        text: text.local_addr().unwrap(),
        irc: irc.local_addr().unwrap(),
        web: web.local_addr().unwrap(),
    };
    config.web.tls = true;
    config.server.handshake_timeout = Duration::from_millis(500);
    let server = Server::new(config)
        .tls_listener(text, certificates.clone())
        .irc_tls_listener(irc, certificates.clone())
        .web_listener(web);
    (TestServer::start(server).await, doors, dir, certificates)
}

/// IRC over TLS and the web door over WSS (Rust clients) chat with a plain-text client; the
/// certificate is reloaded while both stay connected.
#[tokio::test]
async fn irc_and_web_over_tls_and_a_reload_drops_nobody() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (server, doors, dir, certificates) = start_every_door().await;
    let cert = dir.path().join("cert.pem");
    let mut plain = server.login("bob").await;

    let mut irc = tls_connect(doors.irc, &cert).await.unwrap();
    irc.get_mut()
        .write_all(b"NICK alice\r\nUSER alice 0 * :a\r\n")
        .await
        .unwrap();
    expect_line(&mut irc, ":alice!alice@chatpipe JOIN #lobby").await;
    plain.expect("alice has joined the chat").await;

    let stream = tls_connect(doors.web, &cert).await.unwrap().into_inner();
    let (mut web, response) =
        tokio_tungstenite::client_async(format!("wss://localhost:{}/ws", doors.web.port()), stream)
            .await
            .unwrap();
    assert_eq!(response.status(), 101);
    web.send(Message::text(r#"{"type":"hello","name":"carol"}"#))
        .await
        .unwrap();
    plain.expect("carol has joined the chat").await;

    irc.get_mut()
        .write_all(b"PRIVMSG #lobby :hello over IRC and TLS\r\n")
        .await
        .unwrap();
    plain.expect("alice: hello over IRC and TLS").await;
    plain.send("hello in clear").await;
    expect_line(&mut irc, ":bob!bob@chatpipe PRIVMSG #lobby :hello in clear").await;
    let heard = async {
        while let Some(Ok(message)) = web.next().await {
            if message.to_text().unwrap_or("").contains("hello in clear") {
                return true;
            }
        }
        false
    };
    assert!(tokio::time::timeout(WAIT, heard).await.unwrap());

    generate_self_signed("localhost", dir.path()).unwrap();
    certificates.reload().unwrap();
    irc.get_mut()
        .write_all(b"PRIVMSG #lobby :still here\r\n")
        .await
        .unwrap();
    plain.expect_contains("alice: still here").await;
    web.send(Message::text(r#"{"type":"line","text":"me too"}"#))
        .await
        .unwrap();
    plain.expect("carol: me too").await;
    // New connections on every door get the new certificate.
    assert!(tls_connect(doors.web, &cert).await.is_ok());
    assert!(tls_connect(doors.irc, &cert).await.is_ok());
    server.shutdown().await;
}

/// A stalled handshake on the HTTPS port is dropped at the handshake timeout and does not hold
/// up the next client.
#[tokio::test]
async fn a_stalled_https_handshake_holds_nobody_up() {
    let (server, doors, dir, _certificates) = start_every_door().await;
    let mut stalled = tokio::net::TcpStream::connect(doors.web).await.unwrap();
    let mut fresh = tls_connect(doors.web, &dir.path().join("cert.pem"))
        .await
        .unwrap();
    fresh
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let status = line(&mut fresh).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(WAIT, stalled.read(&mut buf))
        .await
        .expect("dropped within the handshake timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    server.shutdown().await;
}

/// On the HTTPS port, an address over its per-address limit is refused before any TLS work.
#[tokio::test]
async fn an_address_over_its_limit_gets_no_https_handshake() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut config = test_config();
    config.admission.exempt = Vec::new();
    // bob (the text door) and carol (the web door): the address's two.
    config.admission.per_address_connections = 2;
    let (server, doors, dir, _certificates) = start_every_door_with(config).await;
    let cert = dir.path().join("cert.pem");
    let mut plain = server.login("bob").await;
    let stream = tls_connect(doors.web, &cert).await.unwrap().into_inner();
    let (mut web, _) =
        tokio_tungstenite::client_async(format!("wss://localhost:{}/ws", doors.web.port()), stream)
            .await
            .unwrap();
    web.send(Message::text(r#"{"type":"hello","name":"carol"}"#))
        .await
        .unwrap();
    plain.expect("carol has joined the chat").await;
    // 127.0.0.1 now has its two connections: the next is closed before its handshake.
    assert!(tls_connect(doors.web, &cert).await.is_err());
    drop(web);
    plain.expect("carol has left the chat").await;
    server.shutdown().await;
}

/// `chatpipe gen-cert` with no names makes a certificate for `localhost`, `127.0.0.1` and `::1`,
/// the addresses as IP address names: a client connecting to any of them (irssi's
/// `/connect -tls … 127.0.0.1 6697`, `curl https://127.0.0.1:…`) accepts it.
#[tokio::test]
async fn gen_cert_names_localhost_and_the_loopback_addresses() {
    use x509_parser::extensions::GeneralName;
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = common::binary::run_to_exit_with(dir.path(), "", &["gen-cert"]);
    assert_eq!(code, Some(0), "{out}");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));

    let pem = std::fs::read(&cert).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let parsed = pem.parse_x509().unwrap();
    let names: Vec<String> = parsed
        .subject_alternative_name()
        .unwrap()
        .expect("a subjectAltName extension")
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => format!("DNS:{dns}"),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => format!(
                    "IP:{}",
                    std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*bytes).unwrap())
                ),
                16 => format!(
                    "IP:{}",
                    std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).unwrap())
                ),
                _ => format!("IP:{bytes:?}"),
            },
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is its owner's only");
    }

    // A TLS client checks each name against the certificate (rustls matches an address only
    // against an IP address name).
    let certificates = TlsCertificates::load(&cert, &key).unwrap();
    let tls = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_addr = tls.local_addr().unwrap();
    let server =
        TestServer::start(Server::new(test_config()).tls_listener(tls, certificates)).await;
    for name in ["localhost", "127.0.0.1", "::1"] {
        let mut reader = tls_connect_as(tls_addr, &cert, name)
            .await
            .unwrap_or_else(|e| panic!("TLS to {name}: {e}"));
        expect_line(
            &mut reader,
            "SERVER: Welcome to chatpipe! Please enter your username:",
        )
        .await;
    }
    server.shutdown().await;
}

/// `chatpipe gen-cert` does not replace an existing certificate or key unless given `--force`.
#[test]
fn gen_cert_keeps_existing_files_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = common::binary::run_to_exit_with(dir.path(), "", &["gen-cert"]);
    assert_eq!(code, Some(0), "{out}");
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let (cert, key) = (read("cert.pem"), read("key.pem"));

    let (code, out) = common::binary::run_to_exit_with(dir.path(), "", &["gen-cert"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("cert.pem already exists") && out.contains("--force"),
        "{out}"
    );
    assert_eq!(
        (read("cert.pem"), read("key.pem")),
        (cert.clone(), key.clone())
    );

    // Only the key there: still refused, and the key kept.
    std::fs::remove_file(dir.path().join("cert.pem")).unwrap();
    let (code, out) = common::binary::run_to_exit_with(dir.path(), "", &["gen-cert"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("key.pem already exists"), "{out}");
    assert_eq!(read("key.pem"), key);
    assert!(!dir.path().join("cert.pem").exists());

    let (code, out) = common::binary::run_to_exit_with(dir.path(), "", &["gen-cert", "--force"]);
    assert_eq!(code, Some(0), "{out}");
    assert_ne!(read("key.pem"), key, "--force replaces the key");
    assert_ne!(read("cert.pem"), cert);
}
