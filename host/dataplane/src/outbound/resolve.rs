//! Host names to addresses, off the cores: `getaddrinfo` blocks, so a few resolver threads for
//! the host do it, with a bounded queue and a short cache. IP literals and `localhost` need
//! no lookup.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use percore_engine::{Origin, OutboundError};

use super::reactor;

/// How long an answer is reused.
const CACHE_TTL: Duration = Duration::from_secs(30);
/// Lookups waiting for the resolver thread at most.
const QUEUE: usize = 1024;
/// Names the cache holds at most (it is emptied when full).
const CACHE_SIZE: usize = 4096;

/// The addresses of `origin`, looked up (or from the cache) by the resolver thread.
pub(crate) async fn resolve(
    origin: &Origin,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, OutboundError> {
    let port = origin.port;
    if let Ok(ip) = origin.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if origin.host == "localhost" {
        return Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ]);
    }
    let resolver = resolver();
    if let Some(ips) = resolver.cached(&origin.host) {
        return Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect());
    }
    let lookup = Arc::new(Lookup::default());
    match resolver
        .queue
        .try_send((origin.host.clone(), lookup.clone()))
    {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            return Err(OutboundError::Dns(
                "too many names are being resolved; try again".into(),
            ));
        }
        Err(TrySendError::Disconnected(_)) => {
            return Err(OutboundError::Dns("the resolver thread is gone".into()));
        }
    }
    let ips = Resolving {
        lookup,
        deadline,
        timer: false,
    }
    .await?;
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

/// What the resolver thread found for a name, or why it found nothing.
type Answer = Result<Vec<IpAddr>, String>;

/// One name being resolved: the answer once there is one, and who waits for it.
#[derive(Debug, Default)]
struct Lookup {
    answer: Mutex<(Option<Answer>, Option<Waker>)>,
}

struct Resolving {
    lookup: Arc<Lookup>,
    deadline: Instant,
    timer: bool,
}

impl Future for Resolving {
    type Output = Result<Vec<IpAddr>, OutboundError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        {
            let mut answer = self.lookup.answer.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(result) = answer.0.take() {
                return Poll::Ready(result.map_err(OutboundError::Dns));
            }
            answer.1 = Some(cx.waker().clone());
        }
        if Instant::now() >= self.deadline {
            return Poll::Ready(Err(OutboundError::Timeout));
        }
        if !self.timer {
            self.timer = true;
            let (at, waker) = (self.deadline, cx.waker().clone());
            reactor::with(|r| r.wake_at(at, waker));
        }
        Poll::Pending
    }
}

struct Resolver {
    queue: SyncSender<(String, Arc<Lookup>)>,
    cache: Mutex<HashMap<String, (Vec<IpAddr>, Instant)>>,
}

impl Resolver {
    fn cached(&self, host: &str) -> Option<Vec<IpAddr>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(host)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(ips, _)| ips.clone())
    }
}

/// Threads that resolve names: a slow name server holds one, not every lookup of the host.
const THREADS: usize = 4;

fn resolver() -> &'static Resolver {
    static RESOLVER: OnceLock<Resolver> = OnceLock::new();
    RESOLVER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(String, Arc<Lookup>)>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..THREADS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("percore-resolver-{i}"))
                .spawn(move || {
                    loop {
                        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((host, lookup)) = next else {
                            return;
                        };
                        answer(&host, &lookup);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a resolver thread: {e}");
            }
        }
        Resolver {
            queue: tx,
            cache: Mutex::new(HashMap::new()),
        }
    })
}

/// Resolve `host` (or find it cached by a lookup that finished meanwhile) and wake who waits.
fn answer(host: &str, lookup: &Lookup) {
    let result = match resolver().cached(host) {
        Some(ips) => Ok(ips),
        None => lookup_host(host),
    };
    if let Ok(ips) = &result {
        let mut cache = resolver().cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_SIZE {
            cache.clear();
        }
        cache.insert(host.to_owned(), (ips.clone(), Instant::now()));
    }
    let waker = {
        let mut answer = lookup.answer.lock().unwrap_or_else(|p| p.into_inner());
        answer.0 = Some(result);
        answer.1.take()
    };
    if let Some(waker) = waker {
        waker.wake();
    }
}

fn lookup_host(host: &str) -> Answer {
    match (host, 0).to_socket_addrs() {
        Ok(addrs) => {
            let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
            ips.dedup();
            if ips.is_empty() {
                Err(format!("`{host}` has no address"))
            } else {
                Ok(ips)
            }
        }
        Err(e) => Err(format!("`{host}` does not resolve: {e}")),
    }
}
