//! The soak test, shortened ([`SoakConfig::quick`]): every kind of async request, with clients
//! that leave mid-wait and mid-stream; after each round `in_flight` returns to 0 and the live
//! tokio tasks return to their idle count. RSS is printed, not asserted. The full soak is the
//! `soak` binary.

use async_mvc_examples::soak::{self, Kind, SoakConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_left_in_flight_after_a_short_soak() {
    soak::raise_fd_limit();
    let config = SoakConfig::quick();
    let report = soak::run(&config, |round| println!("{round}"))
        .await
        .expect("the soak server listens");
    println!("{report}");

    assert_eq!(report.rounds.len(), config.rounds as usize);
    for round in &report.rounds {
        assert_eq!(round.metrics.in_flight, 0, "{round}");
        assert!(
            round.tasks_after <= round.idle_tasks,
            "live tasks did not return to idle:\n{round}"
        );
        assert!(round.settled, "{round}");
        let total = round.total();
        assert_eq!(total.sent, config.requests, "{round}");
        // The soak did exercise every kind, with disconnects, and nothing broke.
        assert_eq!(total.failed, 0, "{round}");
        assert!(total.disconnected > 0, "{round}");
        for (kind, stats) in Kind::ALL.iter().zip(&round.kinds) {
            assert!(stats.ok > 0, "no {} answered:\n{round}", kind.name());
        }
        // The manager saw the clients leave (mid-stream at least), and counted no errors.
        assert!(
            round.metrics.disconnected > round.metrics_before.disconnected,
            "{round}"
        );
        assert_eq!(round.metrics.errors, 0, "{round}");
    }
    assert!(report.leaks().is_empty(), "{report}");
}
