//! A Repo driven from a tokio application and from plain blocking code: its
//! loop runs on its own thread, so the caller's runtime does not matter.

use docweave_shell::Repo;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokio_application_opens_edits_and_syncs() {
    let hub = Repo::builder("hub")
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let app = Repo::builder("app")
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    app.connect(&hub).ok();
    app.edit("todo", |d| d.get_list("items").push("buy milk"))
        .await
        .ok();
    assert!(app
        .wait_for_sync("todo", "hub", Duration::from_secs(10))
        .await
        .is_ok_and(|o| o.is_synced()));
    let on_hub = hub.open("todo").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(on_hub.get_list("items").len(), 1);
    // tokio's own timers keep working alongside.
    tokio::time::sleep(Duration::from_millis(1)).await;
    app.close().await;
    hub.close().await;
}

#[test]
fn blocking_code_opens_edits_and_closes() {
    let hub = Repo::builder("hub")
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let app = Repo::builder("app")
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    app.connect(&hub).ok();
    let doc = app.open_blocking("notes").unwrap_or_else(|e| panic!("{e}"));
    doc.get_text("t").insert(0, "from a plain thread").ok();
    doc.commit();
    let start = std::time::Instant::now();
    let mut seen = String::new();
    while start.elapsed() < Duration::from_secs(10) {
        let on_hub = hub.open_blocking("notes").unwrap_or_else(|e| panic!("{e}"));
        seen = on_hub.get_text("t").to_string();
        if seen == "from a plain thread" {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(seen, "from a plain thread");
    app.close_blocking();
    hub.close_blocking();
}
