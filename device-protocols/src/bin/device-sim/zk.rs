//! `device-sim zk`: the ZK emulator ([`device_protocols::sim::zk`]) as a process.
//!
//! On start-up it prints one line per front end (`zk tcp listening on 127.0.0.1:4370`) so a test
//! that asked for port 0 learns the real port; it then runs until it is killed.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use device_protocols::sim::session_log::SessionLog;
use device_protocols::sim::zk::{
    Admission, CommandLog, Config, Faults, Firmware, FrontEnds, Line, Shape, Store, Terminal,
    Timing,
};
use device_protocols::zk::{AttendanceLayout, CommKey, EventForm, TextCodec, UserLayout};

/// User record format.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum UserFormat {
    /// 72-byte records (TFT firmware).
    #[value(name = "72")]
    Extended72,
    /// 28-byte records (older black-and-white firmware).
    #[value(name = "28")]
    Compact28,
}

/// Attendance record format.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    /// 40-byte records (TFT firmware).
    #[value(name = "40")]
    Full40,
    /// 16-byte extended records.
    #[value(name = "16")]
    Extended16,
    /// 8-byte records.
    #[value(name = "8")]
    Compact8,
}

/// `GET_FREE_SIZES` reply length.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum SizesFormat {
    /// 92 bytes (with face counters).
    #[value(name = "92")]
    Face92,
    /// 80 bytes.
    #[value(name = "80")]
    Basic80,
}

/// Payload form of the realtime attendance events.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum EventFormat {
    /// User id string[24], verify, state, time[6]: 32 bytes.
    #[value(name = "32")]
    UserId32,
    /// The 32-byte form and a u32 work code: 36 bytes.
    #[value(name = "36")]
    UserId36,
    /// u16 uid, verify, state, time[6]: 10 bytes (ZEM560).
    #[value(name = "10")]
    Uid10,
    /// u32 uid, verify, state, time[6]: 12 bytes.
    #[value(name = "12")]
    Uid12,
}

/// A way to make the device misbehave.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Fault {
    /// Stop half-way through each multi-packet bulk reply (TCP: and close the connection).
    DropMidTransfer,
    /// Send the last fragment of each multi-packet bulk reply one byte short.
    ShortChunk,
    /// Answer CONNECT, then nothing.
    Silence,
    /// Report one user and one record more than the device holds.
    WrongCounts,
}

/// Options of the zk emulator, boxed so the subcommand enum stays small.
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    options: Box<Options>,
}

/// Every knob of the zk emulator.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("listen").required(true).multiple(true).args(["tcp", "udp", "serial"])))]
pub(crate) struct Options {
    /// Listen for TCP on this address (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    tcp: Option<SocketAddr>,
    /// Listen for UDP on this address (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    udp: Option<SocketAddr>,
    /// Serve this serial device or pty (experimental framing).
    #[arg(long, value_name = "PATH")]
    serial: Option<PathBuf>,
    /// Number of generated users (uids 1..=N).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(0..=65534))]
    users: u16,
    /// Number of generated attendance records.
    #[arg(long, default_value_t = 100)]
    logs: u32,
    /// Fingerprint templates (fingers 0..N, at most 10) of every user with an odd uid.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=10))]
    fingers: u8,
    /// Make this finger (0–9) of every user with templates a duress finger (valid flag 3).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=9))]
    duress_finger: Option<u8>,
    /// Attendance records punched during every attendance read: appended after the client
    /// read the counts, before the dataset is cut (a log that grows during the read).
    #[arg(long, default_value_t = 0)]
    log_growth: u32,
    /// Seed of the deterministic data generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// User record format.
    #[arg(long, value_enum, default_value = "72")]
    user_format: UserFormat,
    /// Attendance record format.
    #[arg(long, value_enum, default_value = "40")]
    log_format: LogFormat,
    /// Sizes reply length (default: 92 with 72-byte users, 80 with 28-byte users).
    #[arg(long, value_enum)]
    sizes_format: Option<SizesFormat>,
    /// Give every fifth user a non-ASCII name stored in this code page (WHATWG label: utf-8, gbk,
    /// windows-1251, …); 72-byte users only.
    #[arg(long, value_name = "ENCODING")]
    native_names: Option<String>,
    /// Comm key; when set, clients must authenticate.
    #[arg(long)]
    comm_key: Option<u32>,
    /// Device id, the RS485 address (1–254).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=254))]
    device_id: u8,
    /// RS485 mode: ignore serial frames addressed to another device id.
    #[arg(long)]
    rs485: bool,
    /// Serial baud rate.
    #[arg(long, default_value_t = 115_200, value_parser = parse_baud)]
    baud: u32,
    /// Do not throttle serial output to the baud rate (a pty is otherwise slowed to a real line).
    #[arg(long)]
    serial_unthrottled: bool,
    /// Datasets up to this many bytes are sent inline in one DATA packet.
    #[arg(long, default_value_t = 1024)]
    inline_threshold: usize,
    /// Bulk fragment size on TCP (captured devices use 1008).
    #[arg(long, default_value_t = 1008)]
    tcp_fragment: usize,
    /// Bulk fragment size on UDP and serial.
    #[arg(long, default_value_t = 1024)]
    datagram_fragment: usize,
    /// Milliseconds between the packets of one multi-packet reply (0 disables pacing).
    #[arg(long, default_value_t = 20)]
    pacing_ms: u64,
    /// Seconds a TCP client has to send its first packet.
    #[arg(long, default_value_t = 8)]
    first_packet_timeout_secs: u64,
    /// Misbehave (repeatable).
    #[arg(long, value_enum)]
    fault: Vec<Fault>,
    /// Append every received command as a JSON line to this file.
    #[arg(long, value_name = "FILE")]
    command_log: Option<PathBuf>,
    /// Append every TCP session (open, close, peer address, commands; times on the emulator's
    /// monotonic clock) as JSON lines to this file.
    #[arg(long, value_name = "FILE")]
    session_log: Option<PathBuf>,
    /// Payload form of the attendance events pushed to sessions that registered EF_ATTLOG.
    #[arg(long, value_enum, default_value = "32")]
    event_format: EventFormat,
    /// Milliseconds before an unacknowledged event is sent again.
    #[arg(long, default_value_t = 1000)]
    event_resend_ms: u64,
    /// Punch at the terminal every N milliseconds (0: never). A punch is also made for every
    /// SIGUSR1 the process receives. Each punch joins the log and is pushed as an event to
    /// registered sessions; a line `zk punch <user id> <time>` goes to stderr.
    #[arg(long, default_value_t = 0)]
    punch_every_ms: u64,
    /// Serve every TCP client at once instead of one at a time like firmware, so that two
    /// clients talking to the device together show up as overlapping sessions (lock tests).
    #[arg(long)]
    concurrent_tcp: bool,
}

/// Runs the zk emulator until it is killed.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let args = *args.options;
    let user_layout = match args.user_format {
        UserFormat::Extended72 => UserLayout::Extended72,
        UserFormat::Compact28 => UserLayout::Compact28,
    };
    let log_layout = match args.log_format {
        LogFormat::Full40 => AttendanceLayout::Full40,
        LogFormat::Extended16 => AttendanceLayout::Extended16,
        LogFormat::Compact8 => AttendanceLayout::Compact8,
    };
    let face_sizes = match args.sizes_format {
        Some(SizesFormat::Face92) => true,
        Some(SizesFormat::Basic80) => false,
        None => matches!(user_layout, UserLayout::Extended72),
    };
    let mut faults = Faults::default();
    for fault in &args.fault {
        match fault {
            Fault::DropMidTransfer => faults.drop_mid_transfer = true,
            Fault::ShortChunk => faults.short_chunk = true,
            Fault::Silence => faults.silence = true,
            Fault::WrongCounts => faults.wrong_counts = true,
        }
    }
    let native_names = match &args.native_names {
        Some(label) => Some(TextCodec::for_label(label)?),
        None => None,
    };
    let mut store = Store::generate(&Shape {
        users: args.users,
        logs: args.logs,
        user_layout,
        log_layout,
        face_sizes,
        seed: args.seed,
        native_names,
        fingers: args.fingers,
    })?;
    store.log_growth = args.log_growth;
    if let Some(finger) = args.duress_finger {
        store.mark_duress(finger);
    }
    let config = Config {
        comm_key: args.comm_key.filter(|&k| k != 0).map(CommKey),
        inline_threshold: args.inline_threshold,
        tcp_fragment: args.tcp_fragment.max(1),
        datagram_fragment: args.datagram_fragment.max(1),
        device_id: args.device_id,
        faults,
        first_session_id: (args.seed as u16).wrapping_mul(7919).max(1),
        event_form: match args.event_format {
            EventFormat::UserId32 => EventForm::UserId32,
            EventFormat::UserId36 => EventForm::UserId36,
            EventFormat::Uid10 => EventForm::Uid10,
            EventFormat::Uid12 => EventForm::Uid12,
        },
        event_resend: Duration::from_millis(args.event_resend_ms.max(1)),
    };
    let log = CommandLog::open(args.command_log.as_deref())?;
    let timing = Timing {
        pacing: Duration::from_millis(args.pacing_ms),
        first_packet_timeout: Duration::from_secs(args.first_packet_timeout_secs),
    };
    let serial = args.serial.map(|path| {
        let line = Line {
            baud: args.baud,
            rs485: args.rs485,
            throttle: !args.serial_unthrottled,
            pacing: timing.pacing,
        };
        (path, line)
    });
    let terminal = Terminal::bind(
        Firmware::new(config, store, log),
        FrontEnds {
            tcp: args.tcp,
            udp: args.udp,
            serial,
            timing,
            admission: if args.concurrent_tcp {
                Admission::Concurrent
            } else {
                Admission::OneAtATime
            },
            sessions: SessionLog::open(args.session_log.as_deref())?,
        },
    )?;
    // Before the announcement: a test may signal a punch as soon as it has read it.
    start_punching(terminal.firmware(), args.punch_every_ms);
    if let Some(addr) = terminal.tcp_addr()? {
        announce("tcp", &addr.to_string());
    }
    if let Some(addr) = terminal.udp_addr()? {
        announce("udp", &addr.to_string());
    }
    if let Some(path) = terminal.serial_path() {
        announce("serial", &path.display().to_string());
    }
    terminal.serve()
}

/// SIGUSR1s received and not yet turned into punches.
static PUNCH_SIGNALS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_sigusr1(_: libc::c_int) {
    PUNCH_SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// Punches at the terminal for every SIGUSR1 and, with `every_ms` > 0, on that period: a
/// thread that checks every 2 ms, so a test's signal becomes a punch (and an event) at once.
fn start_punching(firmware: Arc<Mutex<Firmware>>, every_ms: u64) {
    // SAFETY: installs a handler that only increments an atomic (async-signal-safe).
    unsafe {
        libc::signal(
            libc::SIGUSR1,
            on_sigusr1 as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    std::thread::spawn(move || {
        let period = (every_ms > 0).then(|| Duration::from_millis(every_ms));
        let mut next = period.map(|p| Instant::now() + p);
        loop {
            std::thread::sleep(Duration::from_millis(2));
            let mut due = PUNCH_SIGNALS.swap(0, Ordering::SeqCst);
            if let (Some(at), Some(period)) = (next, period) {
                if Instant::now() >= at {
                    due += 1;
                    next = Some(at + period);
                }
            }
            for _ in 0..due {
                let record = firmware.lock().expect("firmware lock").punch();
                match record {
                    Some(record) => eprintln!(
                        "zk punch {} {}",
                        record
                            .user_id
                            .as_ref()
                            .map(|id| id.display())
                            .unwrap_or_default(),
                        record.time.to_parts()
                    ),
                    None => eprintln!("device-sim zk: no users, so no punch"),
                }
            }
        }
    });
}

/// Accepts the standard rates the serial front end can configure.
fn parse_baud(text: &str) -> Result<u32, String> {
    const RATES: [u32; 5] = [9600, 19_200, 38_400, 57_600, 115_200];
    text.parse::<u32>()
        .ok()
        .filter(|rate| RATES.contains(rate))
        .ok_or_else(|| format!("unsupported baud rate {text:?}; use one of {RATES:?}"))
}

fn announce(transport: &str, address: &str) {
    let mut out = std::io::stdout().lock();
    // The test harness reads this line to learn the port; flush so it is not stuck in a buffer.
    let _ = writeln!(out, "zk {transport} listening on {address}");
    let _ = out.flush();
}
