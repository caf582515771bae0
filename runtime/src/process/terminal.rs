//! A container's pseudo-terminal (`tty`). The init opens it inside the container, from the
//! container's own `/dev/pts` instance, so the command sees `/dev/pts/0` as its terminal; it
//! makes the slave its stdin, stdout, stderr and controlling terminal, and passes the master to
//! the shim over a Unix socket (`SCM_RIGHTS`), as runc's console socket does. The shim then
//! holds the master: it reads the container's output from it, writes attached input into it
//! and sets its window size.

use std::{
    io::{IoSlice, IoSliceMut},
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

use nix::{
    fcntl::{open, OFlag},
    pty::{grantpt, posix_openpt, ptsname_r, unlockpt},
    sys::{
        socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags},
        stat::Mode,
    },
    unistd::{dup2_stderr, dup2_stdin, dup2_stdout},
};

use crate::error::{Error, IoContext};

/// Run by the container's init (a session leader, root, in the container's root): opens the
/// terminal, makes it the stdio, and sends the master over `console`.
pub(crate) fn open_in_container(console: &OwnedFd, size: Option<(u16, u16)>) -> Result<(), Error> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .context(|| "opening /dev/ptmx in the container".to_string())?;
    grantpt(&master).context(|| "granting the pseudo-terminal".to_string())?;
    unlockpt(&master).context(|| "unlocking the pseudo-terminal".to_string())?;
    let name = ptsname_r(&master).context(|| "naming the pseudo-terminal".to_string())?;
    let slave =
        open(name.as_str(), OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()).context(|| format!("opening {name}"))?;
    if let Some((rows, cols)) = size {
        set_size(slave.as_fd(), rows, cols).context(|| format!("setting the size of {name}"))?;
    }
    // SAFETY: TIOCSCTTY takes an int argument (0: do not steal it from another session).
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(Error::io(format!("making {name} the controlling terminal"), std::io::Error::last_os_error()));
    }
    dup2_stdin(&slave)
        .and_then(|()| dup2_stdout(&slave))
        .and_then(|()| dup2_stderr(&slave))
        .context(|| format!("connecting the container's stdio to {name}"))?;
    let fds = [master.as_raw_fd()];
    let byte = [0u8; 1];
    sendmsg::<()>(
        console.as_raw_fd(),
        &[IoSlice::new(&byte)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .context(|| "handing the terminal to the shim".to_string())?;
    Ok(())
}

/// Run by the shim: the master the init sends over `console`; `None` if the init closed the
/// socket first (it failed, and says why in its report).
pub(crate) fn receive_master(console: &OwnedFd) -> Result<Option<OwnedFd>, Error> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = loop {
        match recvmsg::<()>(console.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.context(|| "receiving the container's terminal".to_string())?,
        }
    };
    let mut master = None;
    for cmsg in msg.cmsgs().context(|| "reading the container's terminal message".to_string())? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: the kernel installed this fd in our table just now; we own it.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if master.is_none() {
                    master = Some(owned);
                }
            }
        }
    }
    Ok(master)
}

/// Sets the window size of the terminal `fd` (master or slave).
pub(crate) fn set_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> std::io::Result<()> {
    let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize, which outlives the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
