//! A TCP proxy that can stop forwarding without closing anything: the
//! partition a frozen network makes (packets dropped, no RST, no FIN), which
//! leaves every socket looking connected from both ends.
//!
//! Plain threads, not tasks: the proxy serves clients on any runtime (each
//! `#[tokio::test]` has its own) and in report programs alike.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How often a pump looks at the freeze and stop flags while it has nothing to do.
const POLL: Duration = Duration::from_millis(2);

#[derive(Default)]
struct Shared {
    frozen: AtomicBool,
    stopped: AtomicBool,
    /// Bytes forwarded (both ways), to tell a test the proxy carried traffic.
    forwarded: AtomicU64,
    /// Every socket the proxy holds, shut down when it stops.
    sockets: Mutex<Vec<TcpStream>>,
}

/// A proxy on a free local port in front of `127.0.0.1:{target}`, stopped
/// (every connection closed) on drop.
pub struct TcpProxy {
    port: u16,
    shared: Arc<Shared>,
}

impl TcpProxy {
    /// Starts forwarding to `target_port` on 127.0.0.1.
    pub fn start(target_port: u16) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy's port");
        let port = listener.local_addr().expect("the proxy's address").port();
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let shared = Arc::new(Shared::default());
        let target: SocketAddr = ([127, 0, 0, 1], target_port).into();
        let accepting = Arc::clone(&shared);
        thread::Builder::new()
            .name(format!("proxy-{port}"))
            .spawn(move || accept(listener, target, accepting))
            .expect("start the proxy's thread");
        TcpProxy { port, shared }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops forwarding in both directions; connections stay open and new
    /// ones are accepted, but no byte crosses until [`TcpProxy::thaw`].
    /// Bytes already read are held and delivered after the thaw, as TCP
    /// delivers retransmitted segments once a network heals.
    pub fn freeze(&self) {
        self.shared.frozen.store(true, Ordering::SeqCst);
    }

    /// Forwards again.
    pub fn thaw(&self) {
        self.shared.frozen.store(false, Ordering::SeqCst);
    }

    /// Whether it is frozen.
    pub fn is_frozen(&self) -> bool {
        self.shared.frozen.load(Ordering::SeqCst)
    }

    /// Bytes forwarded so far, both ways.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        for socket in self
            .shared
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

fn accept(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    while !shared.stopped.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let Ok(server) = TcpStream::connect(target) else {
                    continue; // the target is down: the client sees its connection close
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let mut sockets = shared.sockets.lock().unwrap_or_else(|e| e.into_inner());
                for socket in [&client, &server] {
                    if let Ok(copy) = socket.try_clone() {
                        sockets.push(copy);
                    }
                }
                drop(sockets);
                for (from, to) in [(&client, &server), (&server, &client)] {
                    if let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) {
                        let shared = Arc::clone(&shared);
                        let _ = thread::Builder::new()
                            .name("proxy-pump".into())
                            .spawn(move || pump(from, to, shared));
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(POLL),
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// Copies `from` to `to` until either closes or the proxy stops; while
/// frozen, reads nothing and holds what it read.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        if shared.frozen.load(Ordering::SeqCst) {
            thread::sleep(POLL);
            continue;
        }
        let n = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        // Frozen while reading: hold the bytes until the thaw.
        while shared.frozen.load(Ordering::SeqCst) && !shared.stopped.load(Ordering::SeqCst) {
            thread::sleep(POLL);
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
        shared.forwarded.fetch_add(n as u64, Ordering::SeqCst);
    }
    let _ = to.shutdown(Shutdown::Write);
}
