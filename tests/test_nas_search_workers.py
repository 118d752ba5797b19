"""`edgekit search` survives kills and shares one study between workers: a worker killed with
SIGKILL in the middle of a trial loses no finished trial and leaves none RUNNING after
``--resume``, which draws the same candidates as an uninterrupted search; two workers started at
once on a new PostgreSQL study both finish, with ``--trials`` finished trials in all, each
recorded once, and the outputs written by one of them."""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

optuna = pytest.importorskip("optuna")
pytest.importorskip("torch")

from edgekit.nas.search import SearchConfig, run_search  # noqa: E402
from edgekit.nas.search_study import (fail_lost_trials, open_storage, slot_of,  # noqa: E402
                                      this_worker)
from test_nas_search import npz  # noqa: E402,F401  (the toy 8x8 image dataset fixture)

# the unit tests below ask for trials by hand on a storage with heartbeats
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed")
State = optuna.trial.TrialState
SPACE = ["--resolutions", "32,40", "--widths", "0.25,0.35"]
TINY = ["--strategy", "proxy", "--proxy-steps", "2", "--train-limit", "60", "--final-epochs", "0", "--test-limit", "10"]
EDGEKIT = [sys.executable, "-c", "import sys; from edgekit.cli import main; sys.exit(main())"]


def _search_argv(npz, out, trials, *extra):
    return [*EDGEKIT, "search", "--board", "mps2-an386", "--dataset", str(npz), "--trials",
            str(trials), "--seed", "3", *SPACE, *TINY, "-o", str(out), *extra]


def _trials(url: str, space: str = "mcunet"):
    return optuna.load_study(study_name=f"edgekit-{space}", storage=url).get_trials()


def _by_slot(trials) -> dict:
    return {t.user_attrs["slot"]: t.params for t in trials if t.state == State.COMPLETE}


# --- lost trials, slots (in process, fast) ------------------------------------------------------

def _study(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat=5)
    return optuna.create_study(storage=storage, study_name="edgekit-mcunet",
                               directions=["maximize", "minimize"])


def _running(study, worker=None, drawn=True):
    """A RUNNING trial of ``worker`` (a ``worker`` user attribute), with its parameter drawn
    (and the ``spec`` attribute that says so) or a first one of two only."""
    trial = study.ask()
    trial.suggest_int("x", 0, 100)
    if drawn:
        trial.suggest_int("y", 0, 100)
        trial.set_user_attr("spec", {})
    if worker is not None:
        trial.set_user_attr("worker", worker)
    return trial


def test_trials_of_dead_processes_are_failed_and_queued_again_with_their_params(tmp_path):
    study = _study(tmp_path)
    # a process of this machine that has exited
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead = {**this_worker(), "pid": int(child.stdout), "start": "0"}
    lost = _running(study, dead)
    lost_drawing = _running(study, dead, drawn=False)
    alive = _running(study, this_worker())
    other_host = _running(study, {**dead, "host": "elsewhere"})
    no_worker = _running(study)  # an older edgekit's trial, or one killed before it started

    assert fail_lost_trials(study, grace=3600) == [lost.number, lost_drawing.number]
    trials = study.get_trials()
    assert [t.state for t in trials[:5]] == [State.FAIL, State.FAIL, State.RUNNING,
                                             State.RUNNING, State.RUNNING]
    retries = {t.system_attrs["failed_trial"]: t for t in trials[5:]}
    assert sorted(retries) == [lost.number, lost_drawing.number]
    assert all(t.state == State.WAITING for t in retries.values())
    # all drawn: the same parameters; drawn in part: none (drawn again from the slot's seed)
    assert retries[lost.number].params == lost.params and len(lost.params) == 2
    assert retries[lost_drawing.number].params == {}
    # failed once: a second pass (another worker, say) queues nothing more
    assert fail_lost_trials(study, grace=3600) == [] and len(study.get_trials()) == 7
    # no worker recorded: lost once its start is older than the grace period
    time.sleep(1.1)
    assert fail_lost_trials(study, grace=1) == [no_worker.number]
    assert {t.number for t in study.get_trials(states=(State.RUNNING,))} == {
        alive.number, other_host.number}


def test_slots_count_the_trials_before_that_are_not_failed(tmp_path):
    study = _study(tmp_path)
    numbers = []
    for state in (State.COMPLETE, State.FAIL, State.PRUNED, State.RUNNING, State.RUNNING):
        trial = _running(study)
        numbers.append(trial.number)
        if state != State.RUNNING:
            study.tell(trial, [0.5, 1.0] if state == State.COMPLETE else None, state=state)
    assert [slot_of(study, n) for n in numbers] == [0, 1, 1, 2, 3]


def test_a_trial_another_worker_took_for_lost_is_left_to_it(tmp_path):
    """A worker whose heartbeat did not get through: another worker failed its trial (and
    queued it again); the worker goes on with other trials, and counts none twice."""
    from edgekit.nas.search import _run_trials

    study = _study(tmp_path)

    class TakenOnce:
        current = None

        def __call__(self, trial):
            self.current = trial.number
            if trial.number == 0:
                other = optuna.load_study(study_name=study.study_name,
                                          storage=f"sqlite:///{tmp_path / 's.db'}")
                other.tell(trial.number, state=State.FAIL)
                trial.set_user_attr("late", True)  # refused: the trial is finished
            return 0.5, 1.0

    config = SimpleNamespace(trials=2, heartbeat=5, time_budget=None)
    mine, timed_out = _run_trials(optuna, study, TakenOnce(), config, None)
    assert (sorted(mine), timed_out) == ([1, 2], False)
    assert [t.state for t in study.get_trials()] == [State.FAIL, State.COMPLETE, State.COMPLETE]


@pytest.mark.slow
def test_a_resumed_worker_on_a_complete_study_runs_nothing(tmp_path, npz):
    config = dict(board="mps2-an386", dataset=str(npz), out_dir=tmp_path / "s", strategy="proxy",
                  proxy_steps=2,
                  train_limit=60, val_limit=10, final_epochs=0, test_limit=10, trials=3,
                  seed=1, resolutions=(32, 40), widths=(0.25, 0.35))
    assert run_search(SearchConfig(**config)).trials_total == 3
    again = run_search(SearchConfig(**config, resume=True))
    assert (again.trials_run, again.trials_total, again.best) == (0, 3, None)
    assert "DIR/best exists" in again.not_written


# --- SIGKILL, then --resume ---------------------------------------------------------------------

def _states(db: Path) -> list[str]:
    """The trials' states by number; "RUNNING+" for a running trial with its parameters drawn
    (planning or training its candidate)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return [state + ("+" if state == "RUNNING" and drawn else "")
                    for state, drawn in con.execute(
                        "SELECT state, EXISTS (SELECT 1 FROM trial_params p WHERE p.trial_id ="
                        " t.trial_id) FROM trials t ORDER BY number")]
    except sqlite3.Error:
        return []  # not created yet


def _kill_during_a_trial(argv, db: Path, after: int) -> None:
    """Start ``argv`` and SIGKILL it while a trial runs, once ``after`` trials are complete."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            states = _states(db)
            if states.count("COMPLETE") >= after and states[-1:] == ["RUNNING+"]:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_sigkill_in_a_trial_then_resume_keeps_every_trial_once(tmp_path, npz, record_property):
    out = tmp_path / "killed"
    db, url = out / "search.db", f"sqlite:///{out / 'search.db'}"
    trials = 4
    argv = _search_argv(npz, out, trials)
    for _ in range(3):  # the trial may end between the poll and the kill: kill the next one
        _kill_during_a_trial(argv, db, after=2)
        if "RUNNING+" in _states(db):
            break
        argv = _search_argv(npz, out, trials, "--resume")
    before = _trials(url)
    killed = [t for t in before if t.state == State.RUNNING]
    assert len(killed) == 1, [t.state for t in before]
    finished_before = {t.number: t.params for t in before if t.state == State.COMPLETE}

    done = subprocess.run([*_search_argv(npz, out, trials, "--resume"), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    after = _trials(url)
    states = [t.state for t in after]
    complete = [t for t in after if t.state == State.COMPLETE]
    assert State.RUNNING not in states and State.WAITING not in states
    assert len(complete) == trials == report["trials_total"]
    assert report["trials_run"] == trials - len(finished_before) and report["wrote_outputs"]
    # the finished trials are kept as they were; the killed one is FAIL and ran again as a new
    # trial
    assert all(after[n].params == p and after[n].state == State.COMPLETE
               for n, p in finished_before.items())
    assert after[killed[0].number].state == State.FAIL
    retried = [t for t in after if t.system_attrs.get("failed_trial") == killed[0].number]
    assert len(retried) == 1 and retried[0].state == State.COMPLETE
    # its parameters again: those it had drawn when killed (all of them, or the first few,
    # which the slot's seed draws again), and the rest
    assert killed[0].params and killed[0].params.items() <= retried[0].params.items()
    assert sorted(t.user_attrs["slot"] for t in complete) == list(range(trials))
    assert (out / "best" / "model.tflite").is_file() and not list(out.glob(".best*"))

    # the same candidates, slot by slot, as a search that was never killed
    calm = run_search(SearchConfig(board="mps2-an386", dataset=str(npz), out_dir=tmp_path / "calm",
                                   strategy="proxy", trials=trials, seed=3, proxy_steps=2,
                                   train_limit=60,
                                   final_epochs=0, test_limit=10, resolutions=(32, 40),
                                   widths=(0.25, 0.35)))
    assert calm.trials_run == trials
    assert _by_slot(after) == _by_slot(_trials(f"sqlite:///{tmp_path / 'calm' / 'search.db'}"))
    record_property("summary", f"search SIGKILL/--resume: killed in trial {killed[0].number}"
                    f" with {len(finished_before)} of {trials} complete; after --resume"
                    f" {len(complete)} COMPLETE, {states.count(State.FAIL)} FAIL (the killed"
                    f" one, run again as trial {retried[0].number}), 0 RUNNING; same candidates"
                    " per slot as an uninterrupted search")


# --- two workers on one PostgreSQL study --------------------------------------------------------

def _unavailable(reason: str):
    # in CI run.sh installs PostgreSQL: a missing server is a broken set-up, not a skip
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _postgres_bin() -> Path | None:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda d: int(Path(d).parent.name) if Path(d).parent.name.isdigit() else 0)
    for candidate in [*(Path(d) for d in reversed(dirs)),
                      *([Path(shutil.which("initdb")).parent] if shutil.which("initdb") else [])]:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of its own: data folder and Unix socket in a temp folder, no TCP,
    stopped and removed at the end; the fixture makes new databases (``postgres("name")``
    gives the URL of a new, empty one). PostgreSQL refuses to run as root: as root, its commands
    run as the ``postgres`` user (Debian's package creates it)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install -r requirements.lock)")
    bin_dir = _postgres_bin()
    if bin_dir is None:
        _unavailable("the PostgreSQL server is not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="edgekit-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            _unavailable("running as root and there is no postgres user to run PostgreSQL as")
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = root / "data"

    def pg(tool, *args):
        subprocess.run([*as_user, str(bin_dir / tool), *args], check=True, capture_output=True,
                       timeout=120)

    try:
        pg("initdb", "-D", str(data), "-A", "trust", "-U", "edgekit", "--no-sync")
        pg("pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-w", "-o",
           f"-c listen_addresses='' -c unix_socket_directories={root} -c fsync=off", "start")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        _unavailable(f"PostgreSQL did not start: {err}: {getattr(err, 'stderr', b'')!r} {log}")

    def new_database(name: str) -> str:
        pg("createdb", "-h", str(root), "-U", "edgekit", name)
        return f"postgresql://edgekit@/{name}?host={root}"

    try:
        yield new_database
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_workers_that_create_the_schema_at_once_all_open_it(postgres):
    url = postgres("schema_race")
    code = ("import sys; from edgekit.nas.search_study import open_storage;"
            " open_storage(sys.argv[1]); print('opened')")
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert (proc.returncode, out.strip()) == (0, "opened"), err


@pytest.mark.slow
def test_two_workers_at_once_on_one_postgresql_study(tmp_path, npz, postgres, record_property):
    postgres_url = postgres("search")
    trials = 6
    # each worker as on its own machine: its own -o DIR, one --storage; both started with
    # --resume (join the study, create it if there is none), the README's recipe
    workers = [subprocess.Popen([*_search_argv(npz, tmp_path / f"w{i}", trials, "--resume",
                                               "--storage", postgres_url), "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
    results = []
    for proc in workers:
        out, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    trials_in_db = _trials(postgres_url)
    complete = [t for t in trials_in_db if t.state == State.COMPLETE]
    states = [t.state for t in trials_in_db]
    assert len(complete) == trials and State.RUNNING not in states
    assert sorted(t.number for t in trials_in_db) == list(range(len(trials_in_db)))
    assert sorted(t.user_attrs["slot"] for t in complete) == list(range(trials))
    assert sum(r["trials_run"] for r in results) == trials
    assert [r["trials_total"] for r in results] == [trials, trials]
    # exactly one worker wrote the outputs (the one that ran the last slot's trial)
    assert sorted(r["wrote_outputs"] for r in results) == [False, True]
    assert sorted((tmp_path / f"w{i}" / "best").exists() for i in range(2)) == [False, True]
    writer = next(r for r in results if r["wrote_outputs"])
    assert max(complete, key=lambda t: t.user_attrs["slot"]).user_attrs["worker"]["pid"] == \
        next(p.pid for p, r in zip(workers, results) if r is writer)
    record_property("summary", f"search, 2 workers on one PostgreSQL study, --trials {trials}:"
                    f" trials run {results[0]['trials_run']} + {results[1]['trials_run']};"
                    f" in the database {len(complete)} COMPLETE, {states.count(State.FAIL)} FAIL,"
                    f" 0 RUNNING, numbers 0..{len(trials_in_db) - 1} once each; DIR/best written"
                    " by 1 worker")
