//! Listening sockets for per-core shards.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

/// A listening TCP socket with `SO_REUSEPORT`, so that every core can have its own socket on the
/// same address and the kernel spreads connections between them.
pub fn reuseport_listener(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Attach the classic BPF program `return cpu` to a reuseport group, through `listener` (one of
/// its sockets): a new connection goes to the socket with the index of the CPU that received it.
/// The sockets must have been bound in CPU order, one per CPU; for a CPU with no socket the
/// kernel falls back to its hash.
pub fn attach_cpu_steering(listener: &TcpListener) -> io::Result<()> {
    // A = the CPU the packet arrived on (ancillary load); return A.
    let mut program = [
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: (libc::SKF_AD_OFF + libc::SKF_AD_CPU) as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_A) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `program`, both alive for the call; the kernel copies the
    // program; the option length is the size of the struct passed.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&raw const fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_listeners_share_a_port_and_take_the_steering_program() {
        let first = reuseport_listener("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = first.local_addr().unwrap();
        let second = reuseport_listener(addr, 16).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        attach_cpu_steering(&first).unwrap();
    }
}
