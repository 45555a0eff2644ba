"""A disk that fills, or a directory that turns read-only, while a run writes: every output (checkpoints,
metrics.jsonl, TensorBoard, curves.png) fails with one error naming the file, why and what to do, the last
good checkpoint stays, and the command line stops with that message and a non-zero status, no traceback.
A full disk is simulated by writes that fail with ENOSPC part-way; one test hits the kernel's own limit
(RLIMIT_FSIZE) instead."""
import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from sj_sew import training
from sj_sew.training import checkpoint, cli, metrics
from sj_sew.training.checkpoint import CheckpointError, CheckpointWriteError, RunWriteError

ROOT = Path(__file__).resolve().parents[1]


class _FullDisk:
    """A file opened for writing whose writes fail with ``error`` once ``room`` bytes are written (the bytes
    that fit are written first, as a real full disk does)."""

    def __init__(self, path, mode, room: int, error: int = errno.ENOSPC):
        self.f = open(path, mode)
        self.room, self.error = room, error

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.room:
            self.f.write(data[:self.room])
            self.room = 0
            raise OSError(self.error, os.strerror(self.error))
        self.room -= len(data)
        return self.f.write(data)

    def flush(self):
        self.f.flush()

    def fileno(self):
        return self.f.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _fill_disk(monkeypatch, room=1000, error=errno.ENOSPC, after_writes=0):
    """Checkpoint files opened after the first ``after_writes`` fail with ``error`` past ``room`` bytes."""
    opened = []

    def fake_open(path, mode="r", *args, **kwargs):
        opened.append(path)
        if len(opened) <= after_writes:
            return open(path, mode, *args, **kwargs)
        return _FullDisk(path, mode, room, error)

    monkeypatch.setattr(checkpoint, "open", fake_open, raising=False)


def _state(epoch):
    return {"config": {}, "epoch": epoch, "model": {"w": torch.full((4000,), float(epoch))}}


@pytest.mark.parametrize("room", [0, 1000, 12000])
def test_full_disk_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, room):
    path = tmp_path / "checkpoint.pt"
    training.save_checkpoint(_state(0), path)
    _fill_disk(monkeypatch, room)
    with pytest.raises(CheckpointWriteError) as e:
        training.save_checkpoint(_state(1), path)
    message = str(e.value)
    assert f"could not write the checkpoint {path}: No space left on device (" in message
    assert "free on the file system of" in message and "free some space" in message
    assert f"the last good checkpoint {path} is kept unchanged" in message
    assert isinstance(e.value, CheckpointError) and isinstance(e.value, RunWriteError)
    assert isinstance(e.value.__cause__, OSError) and e.value.__cause__.errno == errno.ENOSPC
    assert training.read_checkpoint(path)["epoch"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temporary file left


def test_full_disk_before_any_checkpoint(tmp_path, monkeypatch):
    _fill_disk(monkeypatch)
    with pytest.raises(CheckpointWriteError, match="no earlier checkpoint exists at"):
        training.save_checkpoint(_state(0), tmp_path / "checkpoint.pt")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_read_only_directory(tmp_path, monkeypatch, code):
    path = tmp_path / "best.pt"
    training.save_checkpoint(_state(0), path)
    _fill_disk(monkeypatch, room=0, error=code)  # as root, chmod cannot make a directory read-only
    with pytest.raises(CheckpointWriteError, match=f"{tmp_path} is not writable .*make it writable"):
        training.save_checkpoint(_state(1), path)
    assert training.read_checkpoint(path)["epoch"] == 0


def test_the_kernels_file_size_limit_is_a_clear_error(tmp_path):
    """A real failing write (RLIMIT_FSIZE: the kernel's EFBIG), which ``torch.save`` alone reports as an
    'unexpected pos' RuntimeError naming neither the file nor the cause."""
    script = textwrap.dedent(f"""
        import resource, signal, torch
        from sj_sew import training
        from sj_sew.training.checkpoint import CheckpointWriteError
        path = {str(tmp_path / 'c.pt')!r}
        training.save_checkpoint({{"config": {{}}, "model": {{"w": torch.zeros(10)}}, "epoch": 0}}, path)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50000, 50000))
        try:
            training.save_checkpoint({{"config": {{}}, "model": {{"w": torch.zeros(100000)}}, "epoch": 1}}, path)
        except CheckpointWriteError as e:
            print(e)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT)] + sys.path), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"could not write the checkpoint {tmp_path / 'c.pt'}: File too large" in out.stdout
    assert "is kept unchanged" in out.stdout
    assert training.read_checkpoint(tmp_path / "c.pt")["epoch"] == 0


# ------------------------------------------------------------------------------------------ metrics


def _partial_write(monkeypatch, fits: int):
    """``os.write`` in the metrics module writes ``fits`` bytes, then fails with ENOSPC."""
    real = os.write

    def write(fd, data):
        nonlocal fits
        if fits <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real(fd, bytes(data[:fits]))
        fits -= n
        return n

    monkeypatch.setattr(metrics.os, "write", write)


def test_metrics_line_that_does_not_fit_leaves_no_torn_line(tmp_path, monkeypatch):
    log = training.MetricsLog(tmp_path, [{"epoch": 0, "test_acc": 0.5}], tensorboard=False)
    before = log.path.read_bytes()
    _partial_write(monkeypatch, fits=7)
    with pytest.raises(RunWriteError, match=rf"could not append epoch 1 to {log.path}: No space left on device \("):
        log.log({"epoch": 1, "test_acc": 0.6})
    assert log.path.read_bytes() == before
    monkeypatch.undo()
    log.log({"epoch": 1, "test_acc": 0.6})  # room again: the log goes on
    assert [r["epoch"] for r in training.read_metrics(log.path)] == [0, 1]


def test_metrics_file_in_a_directory_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RunWriteError, match=f"could not write the metrics file {blocker}/metrics.jsonl"):
        training.MetricsLog(blocker, tensorboard=False)


def test_resumed_metrics_that_do_not_fit_keep_the_old_file(tmp_path, monkeypatch):
    records = [{"epoch": e, "test_acc": 0.5} for e in range(3)]
    training.MetricsLog(tmp_path, records, tensorboard=False)
    before = (tmp_path / "metrics.jsonl").read_bytes()

    def full(self, text, *args, **kwargs):
        Path.write_bytes(self, text[:10].encode())
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(RunWriteError, match="could not write the metrics file .*: No space left on device"):
        training.MetricsLog(tmp_path, records[:2], tensorboard=False)
    assert (tmp_path / "metrics.jsonl").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


def test_read_metrics_skips_a_torn_last_line_only(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 0}\n{"epoch": 1}\n{"epo')
    assert training.read_metrics(path) == [{"epoch": 0}, {"epoch": 1}]
    path.write_text('{"epoch": 0}\n{"epo\n{"epoch": 2}\n')
    with pytest.raises(ValueError, match=rf"{path}, line 2, is not a metrics record"):
        training.read_metrics(path)


class _FailingWriter:
    def __init__(self):
        self.closed = False

    def add_scalar(self, *args):
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_tensorboard_that_cannot_write_stops_with_a_note(tmp_path, capsys):
    log = training.MetricsLog(tmp_path, tensorboard=False)
    log.writer = writer = _FailingWriter()
    log.log({"epoch": 0, "test_acc": 0.5})
    log.log({"epoch": 1, "test_acc": 0.6})
    err = capsys.readouterr().err
    assert err.count("note: TensorBoard logging stopped (OSError: [Errno 28] No space left on device)") == 1
    assert f"{log.path} keeps every record" in err
    assert log.writer is None and writer.closed
    assert [r["epoch"] for r in training.read_metrics(log.path)] == [0, 1]


def test_tensorboard_hparams_that_cannot_be_written(tmp_path, capsys):
    log = training.MetricsLog(tmp_path, tensorboard=False)
    log.log_hparams({"lr": 0.1}, {"hparam/test_acc": 0.5})  # without TensorBoard: nothing
    log.writer = _FailingWriter()
    log.writer.add_hparams = log.writer.add_scalar
    log.log_hparams({"lr": 0.1}, {"hparam/test_acc": 0.5})
    assert "note: TensorBoard logging stopped" in capsys.readouterr().err and log.writer is None


def test_stale_temporaries_in_a_read_only_directory_are_left(tmp_path, monkeypatch):
    (tmp_path / ".checkpoint.pt.tmp123").write_bytes(b"half")

    def refuse(self, missing_ok=False):
        raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "unlink", refuse)
    assert training.remove_stale_temps(tmp_path) == []
    monkeypatch.undo()
    assert training.remove_stale_temps(tmp_path) == [tmp_path / ".checkpoint.pt.tmp123"]


def test_plot_that_cannot_be_written(tmp_path):
    records = [{"epoch": 0, "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.0, "test_acc": 0.5,
                "firing_rate": 0.1}]
    target = tmp_path / "gone" / "curves.png"
    with pytest.raises(RunWriteError, match=f"could not write the plot {target}"):
        training.plot_curves(records, target)


# ------------------------------------------------------------------------------------------ a whole run

RUN = ["--dataset", "events", "--data-option", "per_class=8", "--notation",
       "c4k3s1-BN-IF-{SEW Block(c4)-MPk2s2}*3-FC10", "--T", "2", "--optimizer", "sgd", "--lr", "0.05",
       "--batch-size", "16", "--epochs", "3", "--val-fraction", "0", "--no-progress", "--no-tensorboard",
       "--device", "cpu", "--threads", "1"]


def test_run_stops_on_a_full_disk_keeping_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _fill_disk(monkeypatch, after_writes=2)  # epoch 0's best.pt and checkpoint.pt fit; epoch 1's do not
    with pytest.raises(SystemExit) as stop:
        cli.main(RUN + ["--out", str(out)])
    message = str(stop.value.code)
    assert stop.value.code not in (0, None)
    assert message.startswith(f"stopping at epoch 1: could not write the checkpoint {out / 'best.pt'}: No space "
                              "left on device (")
    assert f"free some space; the last good checkpoint {out / 'best.pt'} is kept unchanged. Then continue from " \
           f"{out / 'checkpoint.pt'} (epoch 0) with: python scripts/train.py --resume --out {out}" in message
    assert "Traceback" not in capsys.readouterr().err
    assert training.read_checkpoint(out / "checkpoint.pt")["epoch"] == 0
    assert [r["epoch"] for r in training.read_metrics(out / "metrics.jsonl")] == [0, 1]
    monkeypatch.undo()  # space again: the run continues from epoch 0's checkpoint and ends
    summary = cli.main(RUN + ["--out", str(out), "--resume"])
    assert summary["epochs"] == 3
    assert [r["epoch"] for r in training.read_metrics(out / "metrics.jsonl")] == [0, 1, 2]
