//! Recovery after a worker's life ends: which of the tasks it held fail, which are
//! charged an attempt and run again, which run again free. Pure functions of what
//! the parent knew at that moment — the worker's progress stamps and the jobs in
//! its pipeline — so every line of the failure contract is decided, and unit
//! tested, here; `slot.rs` only carries the rulings out.
//!
//! Tasks are numbered over the worker's life in dispatch order, as its progress
//! page counts them. A task is *started* before its arguments are decoded and
//! *finished* once its outcome is encoded and dropped; its answer leaves with the
//! rest of its job. So when a worker dies, each task it held is in one stage:
//!
//! | stage | meaning | on death |
//! |---|---|---|
//! | reported | its answer arrived | nothing to do (not in flight any more) |
//! | finished, unreported | its answer had not arrived | run again free, alone — once; a second such death is charged |
//! | running | started, not finished | charged: retried within `retries`, else `WorkerDied` |
//! | next | first unstarted task, with nothing running | run again free, up to [`MAX_FREE_RERUNS`] times, then charged |
//! | queued | behind it in the pipeline | run again free |
//!
//! Every death is charged to at most one task (or to the tasks of one report),
//! and no task runs again without limit: a death at any stage is bounded.

use std::ops::Range;

/// Deaths a task may sit through without being charged when nothing shows it
/// caused them (it had not started, or it was being reported).
pub(crate) const MAX_FREE_RERUNS: u32 = 3;

/// What the parent knows of one job in a worker's pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flight {
    /// The worker-life number of the job's first task.
    pub(crate) first_task: u64,
    /// Tasks in the job.
    pub(crate) count: u32,
    /// Deaths charged to the job's tasks so far.
    pub(crate) attempts: u32,
    /// Deaths its tasks sat through uncharged so far.
    pub(crate) free_reruns: u32,
}

impl Flight {
    fn tasks(&self) -> Range<u64> {
        self.first_task..self.first_task + u64::from(self.count)
    }
}

/// How a worker's life ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// It died on its own (a signal, `exit`, a crash): blame by its stamps.
    Died,
    /// The parent killed it because a task overran the timeout.
    Overdue(Overdue),
    /// The pool was terminated or broke: every task fails with the pool's error.
    Stopped,
    /// It answered the head job with a bad frame: that job fails; the parent
    /// killed it, so nothing else is to blame.
    BadAnswer,
}

/// Which stage of a timed worker overran the limit (see [`overdue`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overdue {
    /// Task `task` has been running (decoding, running, encoding…) too long.
    Running { task: u64 },
    /// Nothing is running, yet task `task` has waited too long to start: the
    /// worker is stopped, or stuck outside any task (its initializer, say).
    Stalled { task: u64 },
    /// Every task in flight finished, but their answers have not arrived in time.
    Unreported,
}

/// What happens to a run of tasks of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Back to the queue as they are.
    Requeue,
    /// Back to the queue, having sat through one more death uncharged.
    RequeueNoted,
    /// Back to the queue one task per job, each having sat through one more death
    /// uncharged: if a task's report kills its worker again, it alone is charged.
    RequeueAlone,
    /// Charged an attempt and run again (within `retries`).
    Retry,
    /// Fails.
    Fail(Blame),
}

/// Why a task fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blame {
    /// Its worker died under it (`WorkerDied`), its retries spent.
    Died,
    /// It overran the timeout (`Timeout`).
    Timeout,
    /// The pool was terminated or broke (its error).
    Stopped,
    /// Its answer broke the protocol (that error).
    BadAnswer,
}

/// The verdict on tasks `tasks` (offsets within job `job` of the flights given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ruling {
    pub(crate) job: usize,
    pub(crate) tasks: Range<u32>,
    pub(crate) verdict: Verdict,
}

/// Rules on every task of `flights` (the worker's pipeline, oldest first) after
/// its life ended as `ending`, its page reading `started`/`finished`. The rulings
/// cover each job's tasks in order, with no gap and no overlap.
pub(crate) fn recover(
    ending: Ending,
    (started, finished): (u64, u64),
    flights: &[Flight],
    retries: u32,
) -> Vec<Ruling> {
    debug_assert!(
        finished <= started,
        "finished {finished} > started {started}"
    );
    debug_assert!(
        flights.first().is_none_or(|f| f.first_task <= finished),
        "a task before the pipeline's head is unfinished"
    );
    let running = (started > finished).then_some(finished);
    // Tasks finished but unreported: the death came while they were reported.
    let reporting = flights.first().is_some_and(|f| f.first_task < finished);
    let mut rulings = Vec::new();
    for (job, flight) in flights.iter().enumerate() {
        let mut rule = |tasks: Range<u64>, verdict: Verdict| {
            let lo = tasks.start.clamp(flight.first_task, flight.tasks().end);
            let hi = tasks.end.clamp(lo, flight.tasks().end);
            if lo < hi {
                rulings.push(Ruling {
                    job,
                    tasks: (lo - flight.first_task) as u32..(hi - flight.first_task) as u32,
                    verdict,
                });
            }
        };
        let charged = if flight.attempts < retries {
            Verdict::Retry
        } else {
            Verdict::Fail(Blame::Died)
        };
        let all = flight.tasks();
        match ending {
            Ending::Stopped => rule(all, Verdict::Fail(Blame::Stopped)),
            Ending::BadAnswer if job == 0 => rule(all, Verdict::Fail(Blame::BadAnswer)),
            Ending::BadAnswer => rule(all, Verdict::Requeue),
            Ending::Overdue(overdue) => {
                let late = match overdue {
                    Overdue::Running { task } | Overdue::Stalled { task } => task..task + 1,
                    Overdue::Unreported => 0..finished,
                };
                rule(all.start..late.start, Verdict::Requeue);
                rule(late.clone(), Verdict::Fail(Blame::Timeout));
                rule(late.end.max(all.start)..all.end, Verdict::Requeue);
            }
            Ending::Died => match running {
                Some(r) => {
                    // The running task killed it; what finished before it had not
                    // been reported (the fine point): run again, free.
                    rule(all.start..r, Verdict::Requeue);
                    rule(r..r + 1, charged);
                    rule(r + 1..all.end, Verdict::Requeue);
                }
                None if flight.first_task < finished => {
                    // It died reporting: after a first such death each task runs
                    // alone, so a second one names the task whose report kills.
                    let reported = if flight.count == 1 && flight.free_reruns > 0 {
                        charged
                    } else {
                        Verdict::RequeueAlone
                    };
                    rule(all.start..finished, reported);
                    rule(finished..all.end, Verdict::Requeue);
                }
                None if reporting => rule(all, Verdict::Requeue),
                None => {
                    // The next task had not started: free, a few times.
                    let next = if flight.free_reruns >= MAX_FREE_RERUNS {
                        charged
                    } else {
                        Verdict::RequeueNoted
                    };
                    rule(all.start..finished + 1, next);
                    rule(finished + 1..all.end, Verdict::Requeue);
                }
            },
        }
    }
    rulings
}

/// A job's clock, for [`overdue`]: its tasks and when it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    pub(crate) first_task: u64,
    pub(crate) count: u32,
    /// CLOCK_MONOTONIC nanoseconds when it was sent.
    pub(crate) at_ns: u64,
}

/// Whether a timed worker holding `flights` (oldest first) has overrun `limit_ns`
/// at any stage, from its progress `stamps`: a running task since it started; a
/// task waiting to start (nothing running) since the worker finished its last task
/// or the job was sent, whichever is later; unreported answers since the last
/// task finished.
pub(crate) fn overdue(
    limit_ns: u64,
    stamps: crate::boundary::clock::Stamps,
    flights: &[Sent],
) -> Option<Overdue> {
    let late = |since: u64| stamps.now_ns.saturating_sub(since) > limit_ns;
    let last = flights.last()?;
    if stamps.started > stamps.finished {
        let task = stamps.finished;
        return late(stamps.started_at_ns).then_some(Overdue::Running { task });
    }
    let next = stamps.finished;
    if next < last.first_task + u64::from(last.count) {
        let sent = flights
            .iter()
            .find(|f| (f.first_task..f.first_task + u64::from(f.count)).contains(&next))
            .map_or(0, |f| f.at_ns);
        let finished_at = if stamps.finished > 0 {
            stamps.finished_at_ns
        } else {
            0
        };
        return late(sent.max(finished_at)).then_some(Overdue::Stalled { task: next });
    }
    late(stamps.finished_at_ns).then_some(Overdue::Unreported)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boundary::clock::Stamps;

    fn flight(first_task: u64, count: u32) -> Flight {
        Flight {
            first_task,
            count,
            attempts: 0,
            free_reruns: 0,
        }
    }

    fn ruling(job: usize, tasks: Range<u32>, verdict: Verdict) -> Ruling {
        Ruling {
            job,
            tasks,
            verdict,
        }
    }

    /// Every job's tasks are ruled on exactly once, in order.
    fn check_cover(rulings: &[Ruling], flights: &[Flight]) {
        for (job, f) in flights.iter().enumerate() {
            let mut next = 0;
            for r in rulings.iter().filter(|r| r.job == job) {
                assert_eq!(
                    r.tasks.start, next,
                    "gap or overlap in job {job}: {rulings:?}"
                );
                next = r.tasks.end;
            }
            assert_eq!(next, f.count, "job {job} not covered: {rulings:?}");
        }
    }

    fn rule(ending: Ending, stamps: (u64, u64), flights: &[Flight], retries: u32) -> Vec<Ruling> {
        let rulings = recover(ending, stamps, flights, retries);
        check_cover(&rulings, flights);
        rulings
    }

    #[test]
    fn the_running_task_is_charged_and_its_neighbours_run_again_free() {
        // Jobs of 4 and 2 tasks (worker-life tasks 10..14, 14..16); task 12 running.
        let flights = [flight(10, 4), flight(14, 2)];
        let rulings = rule(Ending::Died, (13, 12), &flights, 0);
        assert_eq!(
            rulings,
            [
                ruling(0, 0..2, Verdict::Requeue),
                ruling(0, 2..3, Verdict::Fail(Blame::Died)),
                ruling(0, 3..4, Verdict::Requeue),
                ruling(1, 0..2, Verdict::Requeue),
            ]
        );
        let retried = rule(Ending::Died, (13, 12), &flights, 1);
        assert_eq!(retried[1], ruling(0, 2..3, Verdict::Retry));
    }

    #[test]
    fn retries_run_out() {
        let mut f = flight(0, 1);
        f.attempts = 2;
        assert_eq!(
            rule(Ending::Died, (1, 0), &[f], 2),
            [ruling(0, 0..1, Verdict::Fail(Blame::Died))]
        );
        assert_eq!(
            rule(Ending::Died, (1, 0), &[f], 3),
            [ruling(0, 0..1, Verdict::Retry)]
        );
    }

    #[test]
    fn a_death_while_reporting_reruns_alone_then_charges_the_lone_task() {
        // All 3 tasks finished, the answer never came: the report killed it (a
        // `Drop` after the stamp, closed descriptors, an OOM kill while sending).
        let first = rule(Ending::Died, (3, 3), &[flight(0, 3)], 0);
        assert_eq!(first, [ruling(0, 0..3, Verdict::RequeueAlone)]);
        // Alone now, having died reporting once: the next such death is charged.
        let mut alone = flight(7, 1);
        alone.free_reruns = 1;
        assert_eq!(
            rule(Ending::Died, (8, 8), &[alone], 0),
            [ruling(0, 0..1, Verdict::Fail(Blame::Died))]
        );
        assert_eq!(
            rule(Ending::Died, (8, 8), &[alone], 1),
            [ruling(0, 0..1, Verdict::Retry)]
        );
    }

    #[test]
    fn a_death_reporting_part_of_a_job_splits_what_finished_from_what_did_not() {
        // Tasks 0 and 1 of a 4-task job finished; nothing running.
        let rulings = rule(Ending::Died, (2, 2), &[flight(0, 4), flight(4, 1)], 0);
        assert_eq!(
            rulings,
            [
                ruling(0, 0..2, Verdict::RequeueAlone),
                ruling(0, 2..4, Verdict::Requeue),
                ruling(1, 0..1, Verdict::Requeue),
            ]
        );
        // The job after a fully finished one is not noted: the report is to blame.
        let after = rule(Ending::Died, (2, 2), &[flight(0, 2), flight(2, 1)], 0);
        assert_eq!(after[1], ruling(1, 0..1, Verdict::Requeue));
    }

    #[test]
    fn an_idle_death_notes_the_next_task_and_charges_it_at_last() {
        let flights = [flight(5, 2), flight(7, 3)];
        assert_eq!(
            rule(Ending::Died, (5, 5), &flights, 0),
            [
                ruling(0, 0..1, Verdict::RequeueNoted),
                ruling(0, 1..2, Verdict::Requeue),
                ruling(1, 0..3, Verdict::Requeue),
            ]
        );
        let mut worn = flight(5, 1);
        worn.free_reruns = MAX_FREE_RERUNS;
        assert_eq!(
            rule(Ending::Died, (5, 5), &[worn], 0),
            [ruling(0, 0..1, Verdict::Fail(Blame::Died))]
        );
    }

    #[test]
    fn an_empty_pipeline_has_nothing_to_rule() {
        assert!(rule(Ending::Died, (9, 9), &[], 0).is_empty());
    }

    #[test]
    fn stopped_fails_everything_with_the_pools_error() {
        let flights = [flight(0, 2), flight(2, 2)];
        assert_eq!(
            rule(Ending::Stopped, (1, 0), &flights, 5),
            [
                ruling(0, 0..2, Verdict::Fail(Blame::Stopped)),
                ruling(1, 0..2, Verdict::Fail(Blame::Stopped)),
            ]
        );
    }

    #[test]
    fn a_bad_answer_fails_the_head_job_only() {
        let flights = [flight(0, 2), flight(2, 2)];
        assert_eq!(
            rule(Ending::BadAnswer, (3, 2), &flights, 0),
            [
                ruling(0, 0..2, Verdict::Fail(Blame::BadAnswer)),
                ruling(1, 0..2, Verdict::Requeue),
            ]
        );
    }

    #[test]
    fn overdue_tasks_time_out_and_the_rest_run_again() {
        let flights = [flight(0, 3), flight(3, 2)];
        let running = rule(
            Ending::Overdue(Overdue::Running { task: 1 }),
            (2, 1),
            &flights,
            3,
        );
        assert_eq!(
            running,
            [
                ruling(0, 0..1, Verdict::Requeue),
                ruling(0, 1..2, Verdict::Fail(Blame::Timeout)),
                ruling(0, 2..3, Verdict::Requeue),
                ruling(1, 0..2, Verdict::Requeue),
            ]
        );
        let stalled = rule(
            Ending::Overdue(Overdue::Stalled { task: 3 }),
            (3, 3),
            &flights,
            0,
        );
        assert_eq!(
            stalled,
            [
                ruling(0, 0..3, Verdict::Requeue),
                ruling(1, 0..1, Verdict::Fail(Blame::Timeout)),
                ruling(1, 1..2, Verdict::Requeue),
            ]
        );
        let unreported = rule(Ending::Overdue(Overdue::Unreported), (5, 5), &flights, 0);
        assert_eq!(
            unreported,
            [
                ruling(0, 0..3, Verdict::Fail(Blame::Timeout)),
                ruling(1, 0..2, Verdict::Fail(Blame::Timeout)),
            ]
        );
    }

    const MS: u64 = 1_000_000;

    fn stamps(started: u64, finished: u64, started_at: u64, finished_at: u64, now: u64) -> Stamps {
        Stamps {
            started,
            finished,
            started_at_ns: started_at * MS,
            finished_at_ns: finished_at * MS,
            now_ns: now * MS,
        }
    }

    fn sent(first_task: u64, count: u32, at: u64) -> Sent {
        Sent {
            first_task,
            count,
            at_ns: at * MS,
        }
    }

    #[test]
    fn a_running_task_is_overdue_from_its_start() {
        let flights = [sent(0, 2, 0)];
        assert_eq!(overdue(100 * MS, stamps(1, 0, 50, 0, 140), &flights), None);
        assert_eq!(
            overdue(100 * MS, stamps(1, 0, 50, 0, 151), &flights),
            Some(Overdue::Running { task: 0 })
        );
    }

    #[test]
    fn a_task_that_never_starts_is_overdue_from_when_it_could_have() {
        // Sent at 0 to a worker stuck in its initializer (nothing ever finished).
        let fresh = [sent(0, 1, 0)];
        assert_eq!(overdue(100 * MS, stamps(0, 0, 0, 0, 90), &fresh), None);
        assert_eq!(
            overdue(100 * MS, stamps(0, 0, 0, 0, 101), &fresh),
            Some(Overdue::Stalled { task: 0 })
        );
        // Task 4 was sent at 10 behind task 3, which finished at 200: stopped
        // (SIGSTOP) since then, it is late from 200, not from 10.
        let behind = [sent(3, 1, 0), sent(4, 1, 10)];
        let waiting = stamps(4, 4, 150, 200, 250);
        assert_eq!(overdue(100 * MS, waiting, &behind[1..]), None);
        let waited = stamps(4, 4, 150, 200, 301);
        assert_eq!(
            overdue(100 * MS, waited, &behind[1..]),
            Some(Overdue::Stalled { task: 4 })
        );
        // A job sent long after the last finish is late only from when it was sent.
        let later = [sent(4, 1, 500)];
        assert_eq!(overdue(100 * MS, stamps(4, 4, 150, 200, 550), &later), None);
    }

    #[test]
    fn finished_but_unreported_answers_are_overdue_from_the_last_finish() {
        let flights = [sent(0, 2, 0)];
        assert_eq!(overdue(100 * MS, stamps(2, 2, 10, 20, 110), &flights), None);
        assert_eq!(
            overdue(100 * MS, stamps(2, 2, 10, 20, 121), &flights),
            Some(Overdue::Unreported)
        );
    }

    #[test]
    fn nothing_in_flight_is_never_overdue() {
        assert_eq!(overdue(MS, stamps(3, 3, 0, 0, 1_000), &[]), None);
    }
}
