//! The shared failover client (`goim_net::rpc::logic_client`) against fake logic nodes, as
//! the comet uses it: dead and unavailable nodes are skipped, refusals are final.
use std::time::Duration;

use goim_net::rpc::logic::{AuthBody, Connected};
use goim_net::rpc::logic_client::LogicClient;
use goim_net::rpc::RpcError;

use crate::comet::testkit::FakeLogic;

async fn connect(client: &LogicClient, token: Option<&str>) -> Result<Connected, RpcError> {
    let auth = AuthBody { mid: 5, token: token.map(Into::into), ..AuthBody::default() };
    client.connect("c", 1, "127.0.0.1".into(), auth).await
}

#[tokio::test]
async fn fails_over_past_dead_and_unavailable_nodes_then_sticks() {
    let unavailable = FakeLogic::start().await;
    unavailable.set_unavailable(true);
    let good = FakeLogic::start().await;
    // Nothing listens there: the attempt times out.
    let dead = "127.0.0.1:9".to_string();
    let peers = vec![dead, unavailable.addr(), good.addr()];
    let client = LogicClient::new(good.endpoint(), peers, Duration::from_millis(300));

    let reply = connect(&client, None).await.unwrap();
    assert_eq!(reply.mid, 5);
    assert_eq!(unavailable.requests().len(), 1);
    connect(&client, None).await.unwrap();
    assert_eq!(good.requests().len(), 2);
    assert_eq!(unavailable.requests().len(), 1, "sticks to the node that answered");
}

#[tokio::test]
async fn rejection_is_final_and_no_peers_is_an_error() {
    let first = FakeLogic::start().await;
    let second = FakeLogic::start().await;
    let peers = vec![first.addr(), second.addr()];
    let client = LogicClient::new(first.endpoint(), peers, Duration::from_secs(2));
    let err = connect(&client, Some("bad")).await.unwrap_err();
    assert_eq!(err, RpcError::Rejected("invalid token".into()));
    assert!(second.requests().is_empty());

    let none = LogicClient::new(first.endpoint(), vec![], Duration::from_secs(1));
    assert!(matches!(connect(&none, None).await, Err(RpcError::Unavailable(_))));
}

#[tokio::test]
async fn many_calls_failing_on_one_dead_node_move_past_it_once() {
    let down = FakeLogic::start().await;
    down.set_unavailable(true);
    let first = FakeLogic::start().await;
    let second = FakeLogic::start().await;
    let peers = vec!["127.0.0.1:9".to_string(), down.addr(), first.addr(), second.addr()];
    // Long enough per attempt that a loaded box answers in time; the dead node costs one.
    let client = std::sync::Arc::new(LogicClient::new(first.endpoint(), peers, Duration::from_secs(1)));
    // 12 calls on the dead node at once, then on the unavailable one: advancing once per
    // failure would wrap back to them.
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { connect(&client, None).await })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().is_ok());
    }
    assert_eq!(client.current_addr(), Some(first.addr().as_str()));
    let tried = down.requests().len();
    connect(&client, None).await.unwrap();
    assert_eq!(down.requests().len(), tried, "no detour via the nodes that failed");
    assert_eq!(client.current_addr(), Some(first.addr().as_str()));
    assert!(second.requests().is_empty());
}
