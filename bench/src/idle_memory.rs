//! `flowscope-bench idle-memory`: what touching memory again costs after it
//! sat idle, on this machine.
//!
//! flowscope holds each live flow for seconds (until it goes quiet, up to
//! `max_live_flows`) and touches its memory again when it judges it done and
//! when it lets it go; rotel holds nothing. On a virtual machine whose host
//! reclaims or tracks idle guest memory, that second touch can cost far more
//! than a cache miss, and it is invisible inside the guest (no page fault is
//! counted). This measures it: a buffer is touched, left idle, and one byte
//! per 4 KiB page is read (then written) again, in a scattered order.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// `flowscope-bench idle-memory`.
#[derive(Debug, clap::Args)]
pub struct IdleMemoryArgs {
    /// MiB touched (about flowscope's live set at its 20,000-flow bound).
    #[arg(long, default_value_t = 256)]
    pub mib: usize,
    /// Idle times to measure, in milliseconds.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,100,500,1000,3000,10000"
    )]
    pub idle_ms: Vec<u64>,
}

const PAGE: usize = 4096;

/// Prints ns per page for a read, then a write, after each idle time.
pub fn run(args: IdleMemoryArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.mib > 0, "--mib must be at least 1");
    let mut buffer = vec![1u8; args.mib << 20];
    let pages = buffer.len() / PAGE;
    // Each page once, scattered (a multiplicative step coprime with the count).
    let order = |k: usize| (k.wrapping_mul(2_654_435_761) % pages) * PAGE;
    println!("| idle | read ns per page | write ns per page, after it |");
    println!("|---|---|---|");
    for idle in &args.idle_ms {
        for k in 0..pages {
            buffer[order(k)] = buffer[order(k)].wrapping_add(1);
        }
        std::thread::sleep(Duration::from_millis(*idle));
        let start = Instant::now();
        let mut sum = 0u64;
        for k in 0..pages {
            sum += u64::from(black_box(buffer[order(k)]));
        }
        let read = start.elapsed();
        black_box(sum);
        let start = Instant::now();
        for k in 0..pages {
            let at = order(k);
            buffer[at] = black_box(buffer[at].wrapping_add(1));
        }
        let write = start.elapsed();
        let ns = |d: Duration| d.as_nanos() as f64 / pages as f64;
        println!("| {idle} ms | {:.0} | {:.0} |", ns(read), ns(write));
    }
    println!(
        "({} MiB, {pages} pages; a warm page costs tens of ns, a cache miss ~100 ns)",
        args.mib
    );
    Ok(())
}
