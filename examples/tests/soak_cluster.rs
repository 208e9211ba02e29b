//! `soak --cluster`, shortened ([`ClusterSoakConfig::quick`]): Redis, two web and two worker
//! demo processes under load through a worker kill, a web kill and Redis killed for 5 s. No
//! request lost (apart from those the web kill cut), no event duplicated or missed, every placed
//! order shipped exactly once, no process exited on its own. RSS is printed, not asserted.

use async_mvc_examples::soak_cluster::{self, ClusterSoakConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_cluster_soak_loses_and_duplicates_nothing() {
    if std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "redis-server is not installed, and CI=true"
        );
        eprintln!(
            "\n*** SKIPPED: redis-server is not installed; the cluster soak did not run ***\n"
        );
        return;
    }
    let demo = || std::process::Command::new(env!("CARGO_BIN_EXE_demo"));
    let report = soak_cluster::run(demo, &ClusterSoakConfig::quick(), |step| println!("{step}"))
        .await
        .unwrap_or_else(|error| panic!("the cluster did not start: {error}"));
    println!("{report}");
    assert!(report.failures().is_empty(), "{report}");
    assert!(report.orders_placed > 0 && report.answered > 0, "{report}");
}
