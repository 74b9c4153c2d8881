"""How much memory a boot has left (supervisor.early.room_mib), which decides whether the Node started early may
wait, Directus's modules loaded, beside the Directus steps of a cold or upgrade boot: read from a fake root laid out
as /proc and /sys/fs/cgroup are, for cgroup v2 and v1, limited and not."""

from __future__ import annotations

from pathlib import Path

from supervisor.early import room_mib

MIB = 1024 * 1024


def _root(tmp_path: Path, cgroup: str, files: dict[str, str], available_mib: int = 8000) -> str:
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "meminfo").write_text(
        f"MemTotal:       16000000 kB\nMemAvailable:   {available_mib * 1024} kB\n"
    )
    (tmp_path / "proc" / "self" / "cgroup").write_text(cgroup)
    for name, text in files.items():
        path = tmp_path / "sys" / "fs" / "cgroup" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path)


def test_a_cgroup_v2_limit_in_a_container_namespace(tmp_path: Path):
    """`0::/` (a cgroup namespace): the limit less the usage at the mount's root."""
    root = _root(tmp_path, "0::/\n", {"memory.max": f"{1024 * MIB}\n", "memory.current": f"{700 * MIB}\n"})
    assert room_mib(root) == 324


def test_a_cgroup_v2_limit_under_a_path_and_max_meaning_none(tmp_path: Path):
    root = _root(
        tmp_path,
        "0::/kubepods/pod1/c1\n",
        {"kubepods/pod1/c1/memory.max": f"{2048 * MIB}\n", "kubepods/pod1/c1/memory.current": f"{48 * MIB}\n",
         "memory.max": "max\n", "memory.current": f"{10 * MIB}\n"},
    )  # fmt: skip
    assert room_mib(root) == 2000


def test_a_cgroup_v1_memory_controller(tmp_path: Path):
    root = _root(
        tmp_path,
        "5:cpu,cpuacct:/\n4:memory:/docker/abc\n",
        {"memory/docker/abc/memory.limit_in_bytes": f"{512 * MIB}\n",
         "memory/docker/abc/memory.usage_in_bytes": f"{300 * MIB}\n"},
    )  # fmt: skip
    assert room_mib(root) == 212


def test_no_limit_leaves_the_systems_available_memory(tmp_path: Path):
    """An unlimited v1 cgroup (its limit is a huge number) and no v2 limit: MemAvailable decides."""
    root = _root(
        tmp_path,
        "4:memory:/\n",
        {"memory/memory.limit_in_bytes": "9223372036854771712\n", "memory/memory.usage_in_bytes": f"{MIB}\n"},
        available_mib=3000,
    )
    assert room_mib(root) == 3000


def test_a_limit_already_exceeded_is_zero_and_nothing_readable_is_none(tmp_path: Path):
    root = _root(tmp_path, "0::/\n", {"memory.max": f"{100 * MIB}\n", "memory.current": f"{200 * MIB}\n"})
    assert room_mib(root) == 0
    assert room_mib(str(tmp_path / "nowhere")) is None
