"""Atomic file writes: all or nothing, with the permissions a plain ``open`` gives."""

import os
import stat
from pathlib import Path

import pytest

from multimodal_s2s.atomic_file import atomic_write, check_writable
from multimodal_s2s.checkpoint import save_checkpoint
from multimodal_s2s.data.manifest import write_manifest
from multimodal_s2s.errors import InputError


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def test_new_file_gets_the_umask_permissions_not_owner_only(tmp_path, umask_027):
    path = tmp_path / "new" / "folder" / "out.jsonl"
    with atomic_write(path) as file:
        file.write("é\n")
    assert path.read_bytes() == "é\n".encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_failing_block_keeps_the_old_content_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_write(path, binary=True) as file:
        file.write(b"half of the new")
        raise KeyboardInterrupt
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_a_clean_block_replaces_the_old_content(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")
    with atomic_write(path, binary=True) as file:
        file.write(b"new")
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


@pytest.mark.parametrize(
    "write",
    [
        lambda path: save_checkpoint({"step": 1}, path),
        lambda path: write_manifest([{"audio": "a.wav", "text": "one"}], path),
    ],
    ids=["checkpoint", "manifest"],
)
def test_checkpoints_and_manifests_are_readable_by_the_group(tmp_path, umask_027, write):
    path = tmp_path / "written"
    write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_check_writable_names_what_stands_in_the_way(tmp_path):
    folder, file = tmp_path / "folder", tmp_path / "file.txt"
    folder.mkdir()
    file.write_text("x")
    check_writable(tmp_path / "new" / "deeper" / "out.jsonl")
    check_writable(folder / "maps", folder=True)
    with pytest.raises(InputError, match=f"{folder}: is a folder, not a file"):
        check_writable(folder)
    with pytest.raises(InputError, match=f"{file}: is a file, not a folder"):
        check_writable(file, folder=True)
    with pytest.raises(InputError, match=f"cannot write a file below {file}, a file"):
        check_writable(file / "out.jsonl")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_folder_that_takes_no_new_files_is_named_before_any_work():
    """/proc takes no new files, for root too (as a folder without write permission does for
    other users)."""
    with pytest.raises(InputError, match="/proc/out.jsonl: cannot write in /proc"):
        check_writable("/proc/out.jsonl")
    with pytest.raises(InputError, match="/proc/maps: cannot write in /proc"):
        check_writable("/proc/maps", folder=True)
    with pytest.raises(InputError, match="/proc/out.jsonl: cannot write it"):
        with atomic_write("/proc/out.jsonl") as file:
            file.write("never")


def test_atomic_write_to_a_folder_fails_before_writing_anything(tmp_path):
    with pytest.raises(InputError, match="is a folder"), atomic_write(tmp_path) as file:
        file.write("never")
    assert list(tmp_path.iterdir()) == []
