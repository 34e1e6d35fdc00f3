//! The queries part driven by hand: Kademlia results in, replies and
//! actions out.

use futures::channel::oneshot;
use libp2p::{PeerId, identity::Keypair, kad::PeerRecord};

use super::*;
use crate::record::{Write, immutable_key, sign_mutable, verify};

/// Query ids come only from a Kademlia behaviour; one without a swarm
/// hands them out all the same.
fn query_ids(count: usize) -> Vec<QueryId> {
    let local = PeerId::random();
    let store = kad::store::MemoryStore::new(local);
    let mut kad = kad::Behaviour::new(local, store);
    (0..count)
        .map(|i| kad.get_closest_peers(vec![i as u8]))
        .collect()
}

/// The owner of the record every test reads.
fn owner() -> &'static Keypair {
    static OWNER: std::sync::OnceLock<Keypair> = std::sync::OnceLock::new();
    OWNER.get_or_init(Keypair::generate_ed25519)
}

fn key() -> Vec<u8> {
    Write::mutable(owner(), "k", "").key().unwrap()
}

/// A copy of version `seq` of the record, holding `value`, sent by `from`.
fn signed(from: Option<PeerId>, seq: u64, value: &[u8]) -> kad::QueryResult {
    let (key, stored) = sign_mutable(owner(), b"k", seq, value).unwrap();
    found(from, Record::new(RecordKey::new(&key), stored))
}

fn found(from: Option<PeerId>, record: Record) -> kad::QueryResult {
    QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(PeerRecord {
        peer: from,
        record,
    })))
}

fn copy(from: Option<PeerId>, value: &[u8]) -> kad::QueryResult {
    signed(from, 1, value)
}

/// Tracks a read of `k` that needs `required` copies; returns where its
/// answer arrives.
fn track_get(
    queries: &mut Queries,
    id: QueryId,
    required: usize,
) -> oneshot::Receiver<Result<GetRecordOk, GetRecordError>> {
    track_read_of(key(), queries, id, required)
}

fn track_read_of(
    key: Vec<u8>,
    queries: &mut Queries,
    id: QueryId,
    required: usize,
) -> oneshot::Receiver<Result<GetRecordOk, GetRecordError>> {
    let (reply, answer) = oneshot::channel();
    queries.track(
        id,
        Pending::Get {
            read: Read::new(&key),
            key,
            required,
            reply,
        },
    );
    answer
}

/// A copy of the immutable record holding `value`.
fn immutable_copy(from: Option<PeerId>, value: &[u8]) -> kad::QueryResult {
    found(
        from,
        Record::new(RecordKey::new(&immutable_key(value)), value.to_vec()),
    )
}

fn finished() -> kad::QueryResult {
    QueryResult::GetRecord(Ok(kad::GetRecordOk::FinishedWithNoAdditionalRecord {
        cache_candidates: Default::default(),
    }))
}

#[test]
fn a_read_of_an_immutable_record_ends_at_its_quorum_and_stops_the_query() {
    let mut queries = Queries::default();
    let mut out = Actions::default();
    let id = query_ids(1)[0];
    let mut answer = track_read_of(immutable_key(b"v"), &mut queries, id, 2);
    let holder = PeerId::random();
    let mut step = |result, out: &mut Actions| {
        queries.on_progress(id, result, QueryStats::default(), false, out);
    };
    step(immutable_copy(None, b"v"), &mut out);
    assert!(answer.try_recv().unwrap().is_none(), "one copy of two");
    assert!(out.drain().is_empty());

    step(immutable_copy(Some(holder), b"v"), &mut out);
    assert!(matches!(&out.drain()[..], [Action::FinishQuery(stopped)] if *stopped == id));
    let found = answer.try_recv().unwrap().unwrap().unwrap();
    assert_eq!(
        (found.value, found.seq, found.owner),
        (b"v".to_vec(), None, None)
    );
    assert!(found.found_locally);
    assert_eq!(found.found_at, vec![holder]);
    assert!(queries.pending.is_empty());
}

#[test]
fn a_read_that_finds_too_few_copies_says_how_many() {
    let mut queries = Queries::default();
    let mut out = Actions::default();
    let ids = query_ids(2);
    let mut short_answer = track_get(&mut queries, ids[0], 3);
    queries.on_progress(
        ids[0],
        copy(Some(PeerId::random()), b"v"),
        QueryStats::default(),
        false,
        &mut out,
    );
    queries.on_progress(ids[0], finished(), QueryStats::default(), true, &mut out);
    assert!(matches!(
        short_answer.try_recv().unwrap().unwrap(),
        Err(GetRecordError::QuorumFailed {
            found: 1,
            required: 3,
            ..
        })
    ));

    let mut missing_answer = track_get(&mut queries, ids[1], 1);
    let not_found = QueryResult::GetRecord(Err(kad::GetRecordError::NotFound {
        key: RecordKey::new(b"k"),
        closest_peers: Vec::new(),
    }));
    queries.on_progress(ids[1], not_found, QueryStats::default(), true, &mut out);
    let error = missing_answer.try_recv().unwrap().unwrap().unwrap_err();
    assert_eq!(crate::error::ErrorCode::code(&error), "not-found");
}

/// Ends a write query with `result` and returns the caller's answer.
fn write_answer(
    required: usize,
    result: kad::PutRecordResult,
) -> Result<PutRecordOk, PutRecordError> {
    let mut queries = Queries::default();
    let mut out = Actions::default();
    let id = query_ids(1)[0];
    let (reply, mut answer) = oneshot::channel();
    queries.track(
        id,
        Pending::Put {
            key: b"k".to_vec(),
            seq: None,
            required,
            k: 4,
            reply,
        },
    );
    let result = QueryResult::PutRecord(result);
    queries.on_progress(id, result, QueryStats::default(), true, &mut out);
    answer.try_recv().unwrap().unwrap()
}

fn stored_by(peers: usize) -> kad::PutRecordResult {
    Err(kad::PutRecordError::QuorumFailed {
        key: RecordKey::new(b"k"),
        success: (0..peers).map(|_| PeerId::random()).collect(),
        quorum: NonZeroUsize::new(4).unwrap(),
    })
}

#[test]
fn a_write_reports_how_many_peers_confirmed() {
    assert!(matches!(
        write_answer(3, stored_by(1)),
        Err(PutRecordError::QuorumFailed {
            stored: 1,
            required: 3,
            ..
        })
    ));
}

/// A write asks all k closest peers and waits for them all, so that a
/// caller exiting at once cuts nothing short: fewer than k storing it is
/// success as long as the caller's quorum did, and says how many.
#[test]
fn a_write_waits_for_all_k_and_succeeds_with_the_quorum() {
    let ok = write_answer(1, stored_by(2)).expect("one was required");
    assert_eq!(ok.stored, 2);
    let all = write_answer(
        3,
        Ok(kad::PutRecordOk {
            key: RecordKey::new(b"k"),
        }),
    )
    .expect("all k stored it");
    assert_eq!(all.stored, 4);
    let late = Err(kad::PutRecordError::Timeout {
        key: RecordKey::new(b"k"),
        success: vec![PeerId::random(), PeerId::random()],
        quorum: NonZeroUsize::new(4).unwrap(),
    });
    assert_eq!(write_answer(2, late).map(|ok| ok.stored).ok(), Some(2));
    let too_few_in_time = Err(kad::PutRecordError::Timeout {
        key: RecordKey::new(b"k"),
        success: vec![],
        quorum: NonZeroUsize::new(4).unwrap(),
    });
    assert!(matches!(
        write_answer(1, too_few_in_time),
        Err(PutRecordError::Timeout { stored: 0, .. })
    ));
}

/// Regression: a read returned the first copy any peer sent, under
/// whatever key, signed or not.
#[test]
fn a_read_discards_forgeries_counts_them_and_keeps_going() {
    let mut queries = Queries::default();
    let mut out = Actions::default();
    let id = query_ids(1)[0];
    let mut answer = track_get(&mut queries, id, 1);
    let (liar, honest) = (PeerId::random(), PeerId::random());
    let mut step = |result, last, out: &mut Actions| {
        queries.on_progress(id, result, QueryStats::default(), last, out);
    };
    // A valid record under another key, a forged signature, garbage.
    let (other_key, other) = sign_mutable(owner(), b"other", 9, b"x").unwrap();
    let (_, mut tampered) = sign_mutable(owner(), b"k", 9, b"evil").unwrap();
    *tampered.last_mut().unwrap() ^= 1;
    for lie in [
        Record::new(RecordKey::new(&other_key), other),
        Record::new(RecordKey::new(&key()), tampered),
        Record::new(RecordKey::new(&key()), vec![1, 2]),
    ] {
        step(found(Some(liar), lie), false, &mut out);
    }
    assert!(answer.try_recv().unwrap().is_none(), "still looking");
    let forged = out
        .drain()
        .into_iter()
        .filter(
            |a| matches!(a, Action::Emit(Event::RecordForged { from, .. }) if *from == Some(liar)),
        )
        .count();
    assert_eq!(forged, 3);

    step(signed(Some(honest), 4, b"v"), false, &mut out);
    assert!(
        answer.try_recv().unwrap().is_none(),
        "a mutable read asks every holder"
    );
    step(finished(), true, &mut out);
    let read = answer.try_recv().unwrap().unwrap().unwrap();
    assert_eq!(
        (read.value, read.seq, read.forgeries),
        (b"v".to_vec(), Some(4), 3)
    );
    assert_eq!(read.owner, Some(owner().public().to_peer_id()));
    assert_eq!(read.found_at, vec![honest]);
    assert_eq!(queries.forgeries(), 3);
}

#[test]
fn a_read_returns_the_newest_version_enough_copies_agree_on_and_repairs_the_rest() {
    let mut queries = Queries::default();
    let mut out = Actions::default();
    let ids = query_ids(2);
    let mut answer = track_get(&mut queries, ids[0], 2);
    let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
    for (from, seq, value) in [
        (Some(peers[0]), 7, &b"new"[..]),
        (None, 6, b"old"),
        (Some(peers[1]), 6, b"old"),
        (Some(peers[2]), 7, b"new"),
    ] {
        queries.on_progress(
            ids[0],
            signed(from, seq, value),
            QueryStats::default(),
            false,
            &mut out,
        );
    }
    assert!(answer.try_recv().unwrap().is_none(), "it asks every holder");
    queries.on_progress(ids[0], finished(), QueryStats::default(), true, &mut out);
    let read = answer.try_recv().unwrap().unwrap().unwrap();
    assert_eq!((read.value, read.seq), (b"new".to_vec(), Some(7)));
    assert_eq!(read.found_at, vec![peers[0], peers[2]]);
    assert!(!read.found_locally, "this node held an older version");
    // The holders of the older version, this node included, get the newer one.
    match &out.drain()[..] {
        [
            Action::Query {
                query:
                    Query::Repair {
                        record,
                        peers: stale,
                        here: true,
                    },
                pending: Pending::Repair,
            },
        ] => {
            assert_eq!(stale, &vec![peers[1]]);
            assert_eq!(verify(record.key.as_ref(), &record.value).unwrap().seq, 7);
        }
        other => panic!("expected a repair, got {other:?}"),
    }

    // Two versions, one copy each, and the query ends: no agreement.
    let mut split = track_get(&mut queries, ids[1], 2);
    for (peer, seq) in [(peers[0], 7), (peers[3], 8)] {
        queries.on_progress(
            ids[1],
            signed(Some(peer), seq, b"v"),
            QueryStats::default(),
            false,
            &mut out,
        );
    }
    queries.on_progress(ids[1], finished(), QueryStats::default(), true, &mut out);
    assert!(matches!(
        split.try_recv().unwrap().unwrap(),
        Err(GetRecordError::QuorumFailed {
            found: 1,
            required: 2,
            ..
        })
    ));
}

#[test]
fn lookups_of_other_parts_become_outcomes() {
    let mut queries = Queries::default();
    let mut out = Actions::default();
    let ids = query_ids(2);
    queries.track(ids[0], Pending::Holders(7));
    let holder = PeerId::random();
    let result = QueryResult::GetClosestPeers(Err(GetClosestPeersError::Timeout {
        key: vec![1],
        peers: vec![kad::PeerInfo {
            peer_id: holder,
            addrs: Vec::new(),
        }],
    }));
    match queries.on_progress(ids[0], result, QueryStats::default(), true, &mut out) {
        Some(Outcome::Holders {
            discovery: 7,
            holders,
            timed_out: true,
        }) => assert_eq!(holders[0].peer_id, holder),
        other => panic!("expected the holders, got {other:?}"),
    }

    queries.track(ids[1], Pending::Refresh);
    let step = || {
        QueryResult::Bootstrap(Ok(kad::BootstrapOk {
            peer: PeerId::random(),
            num_remaining: 1,
        }))
    };
    // Joined once the lookup of the own id ended; the buckets' lookups
    // after it report nothing.
    assert!(matches!(
        queries.on_progress(ids[1], step(), QueryStats::default(), false, &mut out),
        Some(Outcome::Refreshed)
    ));
    assert!(
        queries
            .on_progress(ids[1], step(), QueryStats::default(), false, &mut out)
            .is_none()
    );
    assert!(
        queries
            .on_progress(ids[1], step(), QueryStats::default(), true, &mut out)
            .is_none()
    );
}

#[test]
fn a_registration_the_store_refuses_is_reported_to_its_caller_and_its_part() {
    let queries = Queries::default();
    let namespace = Namespace::new("chat").unwrap();
    let (reply, mut answer) = oneshot::channel();
    let outcome = queries.on_start_failed(
        Pending::Register {
            namespace: namespace.clone(),
            reply: Some(reply),
        },
        StartError::ProvideRefused,
    );
    assert!(matches!(outcome, Some(Outcome::RegistrationRefused(ns)) if ns == namespace));
    assert!(matches!(
        answer.try_recv().unwrap().unwrap(),
        Err(RegisterError::StoreFull { .. })
    ));
}
