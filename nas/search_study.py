"""The Optuna study behind `edgekit search`, shared by any number of workers (processes on one
or several machines, one database), any of which may be killed at any moment.

- ``--trials N`` is the number of *finished* trials (COMPLETE or PRUNED) the study should hold,
  whoever runs them: a resumed or an added worker runs only what is missing.
- Each trial takes a *slot*: the number of trials before it (by trial number) that are not FAIL.
  A trial whose slot is ``N`` or more is surplus (two workers took the last slot at the same
  moment): it is recorded as FAIL and not run, so the study never holds more than N finished
  trials. The slot seeds the sampler and the training, so the trial in slot k draws the same
  candidate and trains it the same way whoever runs it and however often the search was killed.
- A worker records a heartbeat for its running trial (Optuna's `RDBStorage` heartbeat). A trial
  whose heartbeat is older than the grace period, a trial of a process on this machine that no
  longer runs, or an older trial that never had a heartbeat is lost: it is marked FAIL and
  queued again with the same parameters (`RetryHeartbeatStaleTrialCallback`), and takes the same
  slot.
- When the study is complete, one worker writes the outputs: the one that finished the trial in
  the last slot (`writes_outputs`); the others only stop.
"""

from __future__ import annotations

import datetime
import os
import random
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import SearchError

#: seconds between a running trial's heartbeats, and how many of them may be missed before
#: the trial counts as lost
HEARTBEAT_SECONDS = 10
GRACE_HEARTBEATS = 6
#: how often a lost trial is queued again (a candidate that kills its worker is not retried forever)
MAX_RETRIES = 3
#: the user attribute the objective sets once every parameter of the trial is drawn
DRAWN_ATTR = "spec"
#: attempts at opening a storage whose schema another worker is creating at the same moment
OPEN_ATTEMPTS = 5


def _optuna():
    import optuna

    return optuna


def finished_states():
    states = _optuna().trial.TrialState
    return (states.COMPLETE, states.PRUNED)


def open_storage(url: str, heartbeat: int = HEARTBEAT_SECONDS):
    """An `RDBStorage` for ``url`` with heartbeats and retries of lost trials.

    Two workers that open a new database at once both create its tables; the loser of that race
    gets a unique violation (PostgreSQL: ``pg_type_typname_nsp_index``) or a duplicate table.
    The tables are there by then, so opening again succeeds."""
    import sqlalchemy.exc

    optuna = _optuna()
    for attempt in range(OPEN_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, heartbeat_interval=heartbeat, grace_period=GRACE_HEARTBEATS * heartbeat,
                    heartbeat_stale_trial_callback=retry_lost_trial)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as err:
            if attempt == OPEN_ATTEMPTS - 1:
                raise SearchError(f"storage {url!r} cannot be opened: {_first_line(err)}") from None
            time.sleep(0.2 + random.random())
        except ImportError as err:
            raise SearchError(f"storage {url!r} needs a database driver that is not installed"
                              f" ({_first_line(err.__cause__ or err)}); for PostgreSQL:"
                              " pip install 'psycopg[binary]'") from None
        except Exception as err:  # sqlalchemy/optuna errors for a bad URL vary by backend
            raise SearchError(f"storage {url!r} cannot be opened: {_first_line(err)}") from None


def retry_lost_trial(study, trial) -> None:
    """Queue a lost trial again (`RetryHeartbeatStaleTrialCallback`, at most `MAX_RETRIES`
    times): with its parameters when all were drawn (the trial has its ``spec``), else with
    none. A partial draw would shift the sampler's draws of the rest; from none, the slot's seed
    draws the same parameters again."""
    import copy

    optuna = _optuna()
    if DRAWN_ATTR not in trial.user_attrs:
        trial = copy.deepcopy(trial)
        trial.params, trial.distributions = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)(study, trial)


def _first_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"


def record_settings(study, settings: dict) -> None:
    """Store the study's settings the first time; a worker whose settings differ is refused (its
    trials would not be comparable). Workers starting at once may both write a setting: the
    loser of that insert reads the winner's value."""
    import sqlalchemy.exc

    for key, value in settings.items():
        have = study.user_attrs.get(key)
        if have is None:
            try:
                study.set_user_attr(key, value)
            except sqlalchemy.exc.IntegrityError:
                pass
            have = study.user_attrs.get(key)
        if have != value:
            raise SearchError(f"the study was started with {key} {have!r}, not {value!r}; use"
                              f" the same {key.replace('_', '-')} or another -o DIR / --storage")


@dataclass(frozen=True)
class Counts:
    finished: int
    running: int
    waiting: int


def counts(study) -> Counts:
    states = _optuna().trial.TrialState
    trials = study.get_trials(deepcopy=False)
    return Counts(finished=sum(t.state in finished_states() for t in trials),
                  running=sum(t.state == states.RUNNING for t in trials),
                  waiting=sum(t.state == states.WAITING for t in trials))


def slot_of(study, number: int) -> int:
    """The slot of trial ``number``: how many trials before it are not FAIL."""
    fail = _optuna().trial.TrialState.FAIL
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.number < number and t.state != fail)


def slot_seed(seed: int, slot: int) -> int:
    """A seed of its own for each slot (not ``seed + slot``: runs with seeds 0 and 1 would share
    all but one candidate)."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, slot]).generate_state(1)[0])


# --- workers and lost trials --------------------------------------------------------------------

def _machine() -> str:
    """This boot of this machine, and this process's pid namespace (containers that share a
    host name do not share pids): "" where /proc cannot tell."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), or None when it does not exist;
    with the pid, this names one process even after its pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def this_worker() -> dict:
    """This process, as recorded on each trial it runs (user attribute ``worker``)."""
    return {"host": socket.gethostname(), "machine": _machine(), "pid": os.getpid(),
            "start": _process_start(os.getpid())}


def _is_dead_here(worker: dict) -> bool:
    """True when ``worker`` was a process on this machine that no longer runs (no need to wait
    for its heartbeat to go stale)."""
    if worker.get("host") != socket.gethostname() or not worker.get("machine"):
        return False
    here = _machine()
    if worker["machine"].split("/")[0] != here.split("/")[0]:
        return True  # the machine rebooted since
    if worker["machine"] != here:
        return False  # another pid namespace (container): only its heartbeat tells
    start = _process_start(int(worker["pid"]))
    return start is None or start != worker.get("start")


def fail_lost_trials(study, grace: float) -> list[int]:
    """Mark lost RUNNING trials FAIL and queue each again with its parameters; returns their
    numbers. Lost: a heartbeat older than ``grace`` seconds (Optuna's rule), a process on this
    machine that is gone, or no worker recorded (a trial of an older edgekit, or one killed
    before it started) and started more than ``grace`` seconds ago."""
    optuna = _optuna()
    running = optuna.trial.TrialState.RUNNING
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        before = {t.number for t in study.get_trials(deepcopy=False, states=(running,))}
        optuna.storages.fail_stale_trials(study)
        now = datetime.datetime.now()
        lost = []
        for trial in study.get_trials(deepcopy=False, states=(running,)):
            worker = trial.user_attrs.get("worker")
            if (_is_dead_here(worker) if worker else
                    trial.datetime_start is not None
                    and (now - trial.datetime_start).total_seconds() > grace):
                lost.append(trial)
        for trial in lost:
            try:
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
                continue  # another worker failed it first, and queued it again
            retry_lost_trial(study, next(t for t in study.get_trials(deepcopy=False)
                                         if t.number == trial.number))
    after = {t.number for t in study.get_trials(deepcopy=False, states=(running,))}
    return sorted(before - after)


# --- who writes the outputs ---------------------------------------------------------------------

def last_trial(study) -> int | None:
    """The number of the finished trial in the highest slot (the lowest number if two share it):
    every worker names the same trial, and the worker that ran it writes the outputs."""
    best = None
    for trial in study.get_trials(deepcopy=False, states=finished_states()):
        key = (trial.user_attrs.get("slot", -1), -trial.number)
        if best is None or key > best[0]:
            best = (key, trial.number)
    return None if best is None else best[1]
