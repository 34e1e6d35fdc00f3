//! Helpers shared by the workspace integration tests: a runtime-free executor,
//! timeouts that fail with a message instead of hanging, the `native-node`
//! binary for process tests, and hosts in network namespaces ([`netns`]).

use std::{future::Future, path::PathBuf, time::Duration};

use dht_core::{ConfigBuilder, Role, testnet::Testnet};
use futures::{
    FutureExt,
    executor::{ThreadPool, block_on},
};
use futures_timer::Delay;

pub mod netns;
pub mod process;

/// A `futures` thread pool: the executor of in-process tests. One thread per
/// core; the network's work is spread over it like a real host's would be.
pub fn pool() -> ThreadPool {
    ThreadPool::builder()
        .name_prefix("dht-test-")
        .create()
        .expect("a thread pool can be created")
}

/// Runs `future` to completion on this thread, failing the test if it takes
/// longer than `limit`.
pub fn run<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    block_on(within(limit, what, future))
}

/// Awaits `future`, failing the test if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    futures::select! {
        value = future.fuse() => value,
        () = Delay::new(limit).fuse() => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Asks `check` every 100 ms until it returns `Some`, failing the test after
/// `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(limit, what, async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            Delay::new(Duration::from_millis(100)).await;
        }
    })
    .await
}

/// Waits `duration` of real time.
pub async fn sleep(duration: Duration) {
    Delay::new(duration).await
}

/// A network of `size` nodes on `pool`: node 0 is the bootstrap, every other
/// node a client helper that joined through it. `config` makes each node's
/// configuration.
pub async fn network(
    pool: &ThreadPool,
    size: usize,
    config: impl Fn() -> ConfigBuilder,
) -> Testnet {
    let executor = pool.clone();
    let mut net = Testnet::new(move |task| executor.spawn_ok(task));
    for index in 0..size {
        if let Err(error) = net.spawn(config(), Role::ClientHelper).await {
            panic!("node {index} failed to start: {error}");
        }
    }
    net
}

/// Every node of `net` refreshes its routing table once, as the periodic
/// refresh would after the last node joined, so early joiners know the late
/// ones. Fails the test if a table is empty afterwards.
pub async fn refresh_all(net: &Testnet) {
    let sizes = futures::future::join_all(net.nodes().iter().map(|n| n.handle.bootstrap())).await;
    for (node, size) in net.nodes().iter().zip(sizes) {
        let size = size.expect("node is running");
        assert!(
            size > 0,
            "node {} has an empty routing table after refresh",
            node.index
        );
    }
}

/// The directory holding the workspace's built binaries: the parent of the
/// test executable's `deps` directory.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let deps = exe.parent().expect("test executables live in a directory");
    let dir = if deps.ends_with("deps") {
        deps.parent().unwrap_or(deps)
    } else {
        deps
    };
    dir.to_path_buf()
}
