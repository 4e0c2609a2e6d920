//! Calls that yield at the end of each time slice: two of them interleave on one thread, each
//! is charged only its own slices, and the CPU budget still ends a loop.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use percore_engine::{
    CgiSite, Fault, Guest, InputPreference, Instance, Invocation, Limits, Running, TimeSlice,
    TimeoutKind,
};

use crate::{get, guest, handler};

fn start(path: &str, limits: Limits) -> Running<Instance> {
    let instance = handler("hostile")
        .instantiate(Arc::new(limits), Default::default())
        .unwrap();
    let slice = TimeSlice::new(Duration::from_millis(1), Duration::from_millis(1));
    get(path).with_request(|request| instance.start(request, InputPreference::Region, slice))
}

/// Poll every call once per round, in turn, until all have ended; also counts the rounds.
fn round_robin<I>(mut calls: Vec<Running<I>>) -> (Vec<Invocation>, usize) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut done: Vec<Option<Invocation>> = calls.iter().map(|_| None).collect();
    let mut rounds = 0;
    while done.iter().any(Option::is_none) {
        rounds += 1;
        assert!(rounds < 1_000_000, "the calls never ended");
        for (call, slot) in calls.iter_mut().zip(done.iter_mut()) {
            if slot.is_none()
                && let Poll::Ready((_, invocation)) = call.poll(&mut cx)
            {
                *slot = Some(invocation);
            }
        }
    }
    (done.into_iter().map(Option::unwrap).collect(), rounds)
}

#[test]
fn two_long_calls_interleave_and_each_is_charged_its_own_slices() {
    let limits = Limits {
        cpu_budget: Duration::from_secs(5),
        wall_deadline: Duration::from_secs(10),
        ..Limits::default()
    };
    let started = Instant::now();
    let calls = vec![
        start("/spin?ms=40", limits.clone()),
        start("/spin?ms=40", limits),
    ];
    let (ended, rounds) = round_robin(calls);
    let elapsed = started.elapsed();
    for invocation in &ended {
        let response = invocation.result.as_ref().unwrap();
        assert_eq!(response.body, b"spun 40 ms");
        assert!(invocation.stats.yields >= 5, "{:?}", invocation.stats);
    }
    assert!(rounds >= 5, "the calls ran in turns: {rounds} rounds");
    // One thread cannot use more CPU than the time that passed: had each call been charged
    // the other's slices as well, the two would add up to about twice that.
    let cpu: Duration = ended.iter().map(|i| i.stats.cpu).sum();
    assert!(
        cpu <= elapsed + elapsed / 4,
        "charged {cpu:?} of CPU in {elapsed:?}"
    );
}

#[test]
fn the_cpu_budget_counts_only_the_calls_own_slices() {
    let budget = Duration::from_millis(30);
    let limits = Limits {
        cpu_budget: budget,
        wall_deadline: Duration::from_secs(10),
        ..Limits::default()
    };
    let started = Instant::now();
    let (ended, _) = round_robin(vec![start("/loop", limits.clone()), start("/loop", limits)]);
    for invocation in &ended {
        assert_eq!(
            invocation.result.as_ref().unwrap_err(),
            &Fault::Timeout {
                kind: TimeoutKind::Cpu,
                limit: budget
            }
        );
    }
    // Each loop ran its whole budget, in turns on one thread: a lower bound that holds
    // however busy the machine is (it fails if a call were charged its neighbour's slices).
    assert!(
        started.elapsed() >= budget * 2 - budget / 4,
        "both budgets used up in {:?}",
        started.elapsed()
    );
}

fn slice() -> TimeSlice {
    TimeSlice::new(Duration::from_millis(1), Duration::from_millis(1))
}

fn hostile_role() -> Arc<std::collections::BTreeMap<String, String>> {
    Arc::new([("PROBE_ROLE".to_owned(), "hostile".to_owned())].into())
}

/// A loop in a wasi:http guest (0.2 and 0.3) and in a command: each yields at the end of its slices, and
/// its CPU budget ends it.
#[test]
fn wasi_http_and_command_calls_yield_and_hit_their_budget() {
    let budget = Duration::from_millis(30);
    let limits = Arc::new(Limits {
        cpu_budget: budget,
        wall_deadline: Duration::from_secs(10),
        ..Limits::default()
    });
    let Guest::Http(http) = guest("probe-http") else {
        panic!("probe-http is a wasi:http guest")
    };
    let Guest::Cgi(cgi) = guest("probe-cgi") else {
        panic!("probe-cgi is a command")
    };
    // Each call is started just before it runs: its clock starts when it is made.
    let loop_request = get("/loop");
    let instance = http.instantiate(limits.clone(), hostile_role()).unwrap();
    let (http_ended, _) = round_robin(vec![
        loop_request.with_request(|r| instance.start(r, slice())),
    ]);
    let (cgi_ended, _) = round_robin(vec![loop_request.with_request(|r| {
        cgi.start(
            limits.clone(),
            hostile_role(),
            r,
            &CgiSite::default(),
            slice(),
        )
    })]);
    let Guest::HttpP3(p3) = guest("probe-http3") else {
        panic!("probe-http3 is a wasi:http@0.3 guest")
    };
    let (p3_ended, _) =
        round_robin(vec![loop_request.with_request(|r| {
            p3.start(limits.clone(), hostile_role(), r, slice())
        })]);
    for invocation in [&http_ended[0], &cgi_ended[0], &p3_ended[0]] {
        assert_eq!(
            invocation.result.as_ref().unwrap_err(),
            &Fault::Timeout {
                kind: TimeoutKind::Cpu,
                limit: budget
            }
        );
        assert!(invocation.stats.yields >= 5, "{:?}", invocation.stats);
    }
}
