//! The examples, run as tests: the custom filter end to end over TCP, the stage fixture as is.

mod common;

#[path = "../examples/custom_filter.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;

#[path = "../examples/stage_fixture.rs"]
#[allow(dead_code, unreachable_pub)]
mod stage_fixture;

use common::{TestServer, test_config};

/// Shouting is blocked with a notice only the sender sees; ordinary lines pass.
#[tokio::test]
async fn custom_filter_blocks_shouting_over_tcp() {
    let server = TestServer::start(example::server(test_config())).await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.expect("bob has joined the chat").await;

    alice.send("HELLO EVERYONE").await;
    alice.expect("SERVER: Please don't shout.").await;
    alice.send("hello everyone").await;
    alice.expect("alice: hello everyone").await;
    bob.expect("alice: hello everyone").await;
    alice.send("OK").await;
    bob.expect("alice: OK").await;
    server.shutdown().await;
}

/// The stage-fixture example runs its stage on its fixture file and checks the result.
#[test]
fn stage_fixture_example_passes() {
    stage_fixture::main();
}
