//! Rank 0: the handshake, then the dispatcher — the one thread that makes MPI calls,
//! feeding queued batches to the worker ranks and delivering their outcomes.

use super::MpiJob;
use super::comm::{Backoff, OwnedSend, tighten_timer_slack};
use super::proto::{
    ExeDigest, Hello, Setup, TAG_BYE, TAG_DONE, TAG_FORGET, TAG_HELLO, TAG_RUN, TAG_SETUP,
    TAG_SHARE, TAG_STOP, parse_done, run_message, share_message,
};
use super::worker::refusal;
use crate::boundary::job::HeapArgs;
use crate::cancel::{self, Ticket, Withdraw};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::handoff::{Encodes, Handoff};
use crate::queue::{JobQueue, Phase};
use mpi::point_to_point::MatchedReceiveVec;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, Destination, Source};
use std::collections::VecDeque;
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Rank 0 sleeps at most this long between polls while batches are out (a
/// submission wakes it at once): the added latency of a result after a long task.
const MAX_SLEEP: Duration = Duration::from_micros(200);

/// What the pool's handle and the dispatcher share.
pub(crate) struct Shared {
    pub(crate) queue: JobQueue<MpiJob>,
    pub(crate) config: Config,
    /// Worker ranks: the world size minus one.
    pub(crate) workers: usize,
    /// The dispatcher thread, unparked when work or a phase change arrives.
    pub(crate) dispatcher: Thread,
    /// The encoder thread big `*_async` submissions are handed to (`handoff.rs`).
    pub(crate) handoff: Handoff,
}

impl Shared {
    pub(crate) fn wake(&self) {
        self.dispatcher.unpark();
    }
}

/// On MPI a task starts when rank 0 sends it: what is still in the encoder's
/// backlog or the queue can be withdrawn, what a rank holds runs.
impl Withdraw for Shared {
    fn withdraw(&self, ticket: &Ticket) -> bool {
        let in_backlog = self.handoff.withdraw(ticket);
        let queued = self
            .queue
            .withdraw(|job| cancel::same(job.ticket(), ticket));
        in_backlog || !queued.is_empty()
    }
}

impl Encodes for Shared {
    type Store = HeapArgs;
    fn queue(&self) -> &JobQueue<MpiJob> {
        &self.queue
    }
    fn store(&self) -> &HeapArgs {
        &HeapArgs
    }
    fn max_frame(&self) -> usize {
        self.config.max_frame
    }
    fn handoff(&self) -> &Handoff {
        &self.handoff
    }
    fn queued(&self) {
        self.wake();
    }
    fn submission_ended(&self) {
        self.wake();
    }
}

/// Collects every worker's HELLO, checks it runs this executable, and answers
/// SETUP. On a refusal every worker is told (and exits), and the error returned.
pub(crate) fn handshake(
    world: &SimpleCommunicator,
    own: &Result<ExeDigest>,
    config: &Config,
) -> Result<()> {
    let workers = (world.size() - 1) as usize;
    let mut hellos: Vec<Option<std::result::Result<Hello, String>>> =
        (0..workers).map(|_| None).collect();
    let mut missing = workers;
    let mut backoff = Backoff::new(Duration::from_millis(2));
    let started = Instant::now();
    let mut warned = false;
    while missing > 0 {
        let Some(m) = world
            .any_process()
            .immediate_matched_probe_with_tag(TAG_HELLO)
        else {
            if !warned && started.elapsed() > Duration::from_secs(30) {
                let waiting: Vec<usize> = (0..workers)
                    .filter(|&i| hellos[i].is_none())
                    .map(|i| i + 1)
                    .collect();
                crate::diag::diag!(
                    "fondo: MPI rank 0: still waiting for ranks {waiting:?} to call Pool::mpi() \
                     (every rank must call it)"
                );
                warned = true;
            }
            backoff.pause(std::thread::sleep);
            continue;
        };
        let src = m.1.source_rank();
        let (bytes, _) = m.matched_receive_vec::<u8>();
        let Some(cell) = usize::try_from(src - 1)
            .ok()
            .and_then(|i| hellos.get_mut(i))
        else {
            continue;
        };
        if cell.is_none() {
            missing -= 1;
        }
        *cell = Some(postcard::from_bytes::<Hello>(&bytes).map_err(|e| {
            format!("rank {src} sent a HELLO rank 0 cannot read ({e}): another version of fondo?")
        }));
    }

    let initializer = config.initializer.map(crate::boundary::entry::offset_of_fn);
    let task_timeout_ns = config
        .task_timeout
        .map(|t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX));
    let verdicts: Vec<Option<Error>> = hellos
        .into_iter()
        .enumerate()
        .map(|(i, hello)| {
            let rank = (i + 1) as i32;
            match hello {
                Some(Ok(h)) => refusal(rank, &h, own),
                Some(Err(why)) => Some(Error::Mpi(why)),
                None => Some(Error::Mpi(format!("rank {rank} sent no HELLO"))),
            }
        })
        .collect();
    // One refusal stops every rank: a rank left serving would keep rank 0's
    // MPI_Finalize waiting for it forever.
    let first_refusal = verdicts.iter().flatten().next().cloned();
    for (i, verdict) in verdicts.iter().enumerate() {
        let rank = (i + 1) as i32;
        let verdict = match (verdict, &first_refusal) {
            (Some(own), _) => Err(own.to_string()),
            (None, Some(other)) => Err(format!("another rank was refused: {other}")),
            (None, None) => Ok(()),
        };
        let setup = Setup {
            verdict,
            initializer,
            task_timeout_ns,
        };
        // Cannot fail (plain data); an empty SETUP would make the worker abort the job.
        let bytes = postcard::to_stdvec(&setup).unwrap_or_default();
        world
            .process_at_rank(rank)
            .send_with_tag(&bytes[..], TAG_SETUP);
    }
    match first_refusal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One worker rank as the dispatcher sees it.
struct Rank {
    rank: i32,
    /// Batches sent and not answered, in the order the rank runs them.
    inflight: VecDeque<(u64, MpiJob)>,
    /// When the rank last got or answered work (a counter): a rank that worked
    /// recently is still polling hot, one idle for long sleeps between polls.
    last_active: u64,
    /// Shared values the rank has received.
    shares: crate::boundary::shares::Delivered,
}

impl Rank {
    /// Queues, before `job`, the shared values it names that this rank lacks, and
    /// tells the rank to forget those whose last handle was dropped.
    fn deliver_shares(
        &mut self,
        world: &SimpleCommunicator,
        job: &MpiJob,
        sends: &mut Vec<OwnedSend>,
    ) {
        let dest = world.process_at_rank(self.rank);
        for id in self.shares.gone() {
            sends.push(OwnedSend::start(
                &dest,
                id.to_le_bytes().to_vec(),
                TAG_FORGET,
            ));
        }
        for share in self.shares.missing(&job.shares) {
            let msg = share_message(share.id(), share.bytes());
            sends.push(OwnedSend::start(&dest, msg, TAG_SHARE));
        }
    }
}

/// The dispatcher loop: runs until the pool is closed and drained, or terminated;
/// then stops every worker rank and returns (the caller finalizes MPI).
pub(crate) fn dispatch(world: &SimpleCommunicator, shared: &Shared) {
    tighten_timer_slack();
    let cap = shared.config.prefetch + 1;
    let mut ranks: Vec<Rank> = (1..world.size())
        .map(|rank| Rank {
            rank,
            inflight: VecDeque::new(),
            last_active: 0,
            shares: crate::boundary::shares::Delivered::default(),
        })
        .collect();
    let mut sends: Vec<OwnedSend> = Vec::new();
    let mut next_id = 0u64;
    // Orders dispatches and answers, for `Rank::last_active`.
    let mut clock = 0u64;
    let mut inflight = 0usize;
    let mut backoff = Backoff::new(MAX_SLEEP);
    loop {
        let mut busy = false;
        while let Some(m) = world.any_process().immediate_matched_probe() {
            busy = true;
            let (src, tag) = (m.1.source_rank(), m.1.tag());
            let (msg, _) = m.matched_receive_vec::<u8>();
            if tag == TAG_DONE {
                inflight -= deliver(&mut ranks, src, &msg, &mut clock);
            } else {
                crate::diag::diag!(
                    "fondo: MPI rank 0: unexpected message (tag {tag:#x}) from rank {src}"
                );
            }
        }
        sends.retain_mut(|s| !s.test());

        let phase = shared.queue.phase();
        if phase == Phase::Terminated {
            for r in &mut ranks {
                for (_, job) in r.inflight.drain(..) {
                    job.fail(&Error::Terminated);
                }
            }
            break;
        }
        // Feed the least-loaded rank with room; among equals the one active most
        // recently, which answers fastest (an idle rank sleeps between polls).
        loop {
            let pick = (0..ranks.len())
                .filter(|&i| ranks[i].inflight.len() < cap)
                .min_by_key(|&i| (ranks[i].inflight.len(), u64::MAX - ranks[i].last_active));
            let Some(i) = pick else { break };
            let Some(job) = shared.queue.try_pop() else {
                break;
            };
            if !job.claim() {
                // Cancelled before rank 0 sent it (`cancel.rs`): dropped unrun.
                continue;
            }
            let id = next_id;
            next_id += 1;
            ranks[i].deliver_shares(world, &job, &mut sends);
            let msg = run_message(id, job.entry, job.count, &job.args);
            let dest = world.process_at_rank(ranks[i].rank);
            sends.push(OwnedSend::start(&dest, msg, TAG_RUN));
            ranks[i].inflight.push_back((id, job));
            clock += 1;
            ranks[i].last_active = clock;
            inflight += 1;
            busy = true;
        }
        if phase == Phase::Closed && inflight == 0 && shared.queue.is_empty() {
            break;
        }
        if busy {
            backoff.reset();
        } else if inflight == 0 && sends.is_empty() {
            // Nothing can arrive from the workers: after the usual spin (the next
            // submission often follows at once), sleep until a submission, close()
            // or terminate() unparks us.
            backoff.pause(|_| std::thread::park());
        } else {
            backoff.pause(std::thread::park_timeout);
        }
    }
    stop_workers(world, &mut ranks, sends);
}

/// Delivers a DONE; returns how many in-flight batches it completed (0 or 1).
fn deliver(ranks: &mut [Rank], src: i32, msg: &[u8], clock: &mut u64) -> usize {
    let Some(r) = usize::try_from(src - 1).ok().and_then(|i| ranks.get_mut(i)) else {
        return 0;
    };
    let (id, count, body) = match parse_done(msg) {
        Ok(d) => d,
        Err(e) => {
            crate::diag::diag!("fondo: MPI rank 0: from rank {src}: {e}");
            return 0;
        }
    };
    // Answers come in dispatch order, so this is the front one.
    let Some(pos) = r.inflight.iter().position(|(j, _)| *j == id) else {
        return 0;
    };
    let Some((_, mut job)) = r.inflight.remove(pos) else {
        return 0;
    };
    *clock += 1;
    r.last_active = *clock;
    if let Err(e) = job.deliver(count, body) {
        job.fail(&e);
    }
    1
}

/// Sends STOP to every worker and waits for each one's BYE (its last message),
/// reading and dropping late answers meanwhile, so no send is left pending when
/// MPI is finalized.
fn stop_workers(world: &SimpleCommunicator, ranks: &mut [Rank], mut sends: Vec<OwnedSend>) {
    for r in ranks.iter() {
        let dest = world.process_at_rank(r.rank);
        sends.push(OwnedSend::start(&dest, Vec::new(), TAG_STOP));
    }
    let mut left = ranks.len();
    let mut backoff = Backoff::new(MAX_SLEEP);
    while left > 0 || !sends.is_empty() {
        let mut busy = false;
        while let Some(m) = world.any_process().immediate_matched_probe() {
            busy = true;
            let (src, tag) = (m.1.source_rank(), m.1.tag());
            let (msg, _) = m.matched_receive_vec::<u8>();
            match tag {
                TAG_BYE => left = left.saturating_sub(1),
                TAG_DONE => {
                    deliver(ranks, src, &msg, &mut 0);
                }
                _ => {}
            }
        }
        sends.retain_mut(|s| !s.test());
        if busy {
            backoff.reset();
        } else {
            backoff.pause(std::thread::sleep);
        }
    }
}
