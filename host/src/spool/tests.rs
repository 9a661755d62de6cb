use super::*;

fn env(id: &str, rcpts: &[&str]) -> Envelope {
    super::envelope::test_envelope(id, rcpts)
}

fn opts(segment_size: u64) -> SpoolOptions {
    SpoolOptions { segment_size }
}

#[tokio::test]
async fn commit_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spool::open(dir.path(), opts(1 << 20)).unwrap();
    s.commit_message(env("A", &["a@l"]), b"Subject: a\r\n\r\nbody\r\n")
        .await
        .unwrap();
    s.commit_message(env("B", &["b@l"]), b"B").await.unwrap();
    let mut e = s.get("A").unwrap();
    e.recipients[0].state = RcptState::Queued;
    s.update(e).unwrap().await.unwrap().unwrap();
    s.complete("B").unwrap().await.unwrap().unwrap();
    assert_eq!(s.list().len(), 1);
    s.close();
    drop(s);
    let s = Spool::open(dir.path(), opts(1 << 20)).unwrap();
    let l = s.list();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].recipients[0].state, RcptState::Queued);
    assert_eq!(s.read_data("A").unwrap(), b"Subject: a\r\n\r\nbody\r\n");
    assert!(s.read_data("B").is_err());
}

#[tokio::test]
async fn second_server_cannot_open_the_same_spool() {
    let dir = tempfile::tempdir().unwrap();
    let _s = Spool::open(dir.path(), opts(1 << 20)).unwrap();
    let e = Spool::open(dir.path(), opts(1 << 20)).err().unwrap();
    assert!(e.to_string().contains("in use"));
    assert!(Spool::open_readonly(dir.path()).is_err());
}

#[tokio::test]
async fn torn_and_damaged_records_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Spool::open(dir.path(), opts(1 << 20)).unwrap();
        s.commit_message(env("A", &["a@l"]), b"one").await.unwrap();
        s.commit_message(env("B", &["b@l"]), b"two").await.unwrap();
        s.commit_message(env("C", &["c@l"]), b"three")
            .await
            .unwrap();
        s.close();
    }
    let seg = list_segments(dir.path()).unwrap().pop().unwrap();
    let path = seg_path(dir.path(), seg);
    let mut bytes = std::fs::read(&path).unwrap();
    // Damage B's payload (flip a byte of its content), and add a torn tail.
    let pos = memchr::memmem::find(&bytes, b"two").unwrap();
    bytes[pos] ^= 0xff;
    let (torn, _) = format::encode(Kind::Message, Some(&env("D", &["d@l"])), "D", b"four");
    bytes.extend_from_slice(&torn[..torn.len() - 3]);
    std::fs::write(&path, &bytes).unwrap();
    let s = Spool::open(dir.path(), opts(1 << 20)).unwrap();
    let ids: Vec<String> = s.list().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, vec!["A", "C"]);
    assert_eq!(s.read_data("C").unwrap(), b"three");
}

#[tokio::test]
async fn segments_rotate_copy_forward_and_get_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spool::open(dir.path(), opts(4096)).unwrap();
    let body = vec![b'x'; 1000];
    s.commit_message(env("KEEP", &["k@l"]), b"keep me")
        .await
        .unwrap();
    for i in 0..200 {
        let id = format!("M{i}");
        s.commit_message(env(&id, &["a@l"]), &body).await.unwrap();
        s.complete(&id).unwrap().await.unwrap().unwrap();
    }
    // The long-lived message was copied forward; old segments are gone.
    assert!(s.segment_count() <= 4, "{} segments", s.segment_count());
    assert!(list_segments(dir.path()).unwrap().len() <= 4);
    assert_eq!(s.read_data("KEEP").unwrap(), b"keep me");
    s.close();
    drop(s);
    let s = Spool::open(dir.path(), opts(4096)).unwrap();
    let ids: Vec<String> = s.list().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, vec!["KEEP"]);
    assert_eq!(s.read_data("KEEP").unwrap(), b"keep me");
}

#[tokio::test]
async fn a_long_queue_is_not_copied_forward_again_and_again() {
    // Queue-only: every message stays live. Each segment must be written
    // about once; copying whole live segments forward would make every
    // write rotate and copy a full segment.
    let dir = tempfile::tempdir().unwrap();
    let s = Spool::open(dir.path(), opts(64 * 1024)).unwrap();
    let body = vec![b'x'; 20 * 1024];
    for i in 0..100 {
        s.commit_message(env(&format!("Q{i}"), &["a@r"]), &body)
            .await
            .unwrap();
    }
    // 2 MB of live messages in 64 KiB segments: about 32 segments made.
    // Copying whole live segments forward made a new segment per write.
    let segs = list_segments(dir.path()).unwrap();
    let newest = *segs.iter().max().unwrap();
    assert!(newest <= 45, "{newest} segments made for 2 MB");
    assert_eq!(s.list().len(), 100);
    assert_eq!(s.read_data("Q0").unwrap(), body);
    assert_eq!(s.read_data("Q99").unwrap(), body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_group_and_all_survive() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spool::open(dir.path(), opts(1 << 20)).unwrap();
    let mut tasks = Vec::new();
    for t in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let id = format!("T{t}-{i}");
                s.commit_message(env(&id, &["a@l"]), id.as_bytes())
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    s.close();
    drop(s);
    let s = Spool::open_readonly(dir.path()).unwrap();
    assert_eq!(s.list().len(), 500);
    assert_eq!(s.read_data("T7-13").unwrap(), b"T7-13");
}
