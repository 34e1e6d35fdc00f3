//! A `native-node` with a `--data-dir`, as real processes: killed with
//! SIGKILL, it starts again holding every record it acknowledged, and
//! rejoins through the peers it knew when its bootstrap is gone.

use std::time::Duration;

use dht_tests::process::{NodeProcess, error_code, free_port, run_once, stored_key, temp_dir};

const LONG: Duration = Duration::from_secs(40);

#[test]
fn a_killed_node_keeps_what_it_acknowledged_and_rejoins_without_its_bootstrap() {
    let dir = temp_dir("restarts");
    let boot_key = dir.join("bootstrap.key");
    let mut boot = NodeProcess::start(
        "bootstrap",
        &[
            "bootstrap",
            "--key-file",
            boot_key.to_str().expect("utf-8"),
            "--no-http",
            "--report-interval",
            "0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ],
    );
    let boot_address = boot.started().address("tcp");
    // `client run` prints its start-up line once it has joined.
    let mut other = NodeProcess::start("other", &["client", "--bootstrap", &boot_address, "run"]);
    other.started();

    let data = dir.join("kept");
    let data = data.to_str().expect("utf-8");
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let start_kept = |name: &str| {
        let args = [
            "client",
            "--bootstrap",
            &boot_address,
            "--data-dir",
            data,
            "--listen",
            &listen,
            "run",
        ];
        NodeProcess::start(name, &args)
    };
    let mut kept = start_kept("kept");
    let kept_id = kept.started().peer_id;

    // Three nodes and k = 20: every node stores every record.
    let keys: Vec<String> = (0..4)
        .map(|i| {
            let value = format!("kept value {i}");
            let (status, stdout, stderr) = run_once(&[
                "--json",
                "client",
                "--bootstrap",
                &boot_address,
                "put-immutable",
                &value,
            ]);
            assert!(status.success(), "{stderr}");
            stored_key(&stdout)
        })
        .collect();
    for key in &keys {
        kept.wait_for(LONG, "the record acknowledged", |v| {
            v["type"] == "record-stored" && v["key"]["text"] == key.as_str()
        });
    }

    kept.kill();
    boot.terminate();
    let mut again = start_kept("kept-again");
    // Joined through the other node: its bootstrap is gone.
    assert_eq!(again.started().peer_id, kept_id, "same identity");

    // With the other node gone too, only the restarted one can answer.
    other.kill();
    let kept_address = format!("{listen}/p2p/{kept_id}");
    for (i, key) in keys.iter().enumerate() {
        let (status, stdout, stderr) =
            run_once(&["client", "--bootstrap", &kept_address, "get", key]);
        assert!(status.success(), "{key}: {status} {stdout}\n{stderr}");
        assert_eq!(stdout, format!("kept value {i}"));
    }

    // A second node on the same directory is refused with a clear error.
    let (status, stdout, _) = run_once(&[
        "--json",
        "client",
        "--bootstrap",
        &kept_address,
        "--data-dir",
        data,
        "get",
        &keys[0],
    ]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(error_code(&stdout).as_deref(), Some("data-dir-in-use"));
}
