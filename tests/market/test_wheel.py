"""The built wheel is the product: installed on its own, away from the checkout, it imports, runs and simulates.

The wheel is built from a copy of the sources (so no ``build/`` lands in the checkout) and installed with
``--no-deps`` into a fresh virtual environment.  That environment sees the project's third-party
dependencies through a ``.pth`` line naming ``.venv``'s site-packages: a directory added that way is put
on ``sys.path`` but is not a site dir, so the ``.pth`` files inside it (among them the editable install's
finder hook, which maps ``market`` & co. to this checkout) are not executed.  Every command then runs
from a temporary directory with ``PYTHONPATH`` unset, so code that reads the checkout (``node_modules``,
``contracts/``, ``zk/``) or a file missing from the wheel fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["market", "owner", "trainer_node", "aggregator", "simulator", "market_app"]
#: files the installed product reads at run time
PACKAGE_DATA = [
    "market/chain/artifacts/ContributionMarket.json",
    "market/chain/artifacts/RoundVerifier.json",
    "market/zk/poseidon_constants.json.gz",
    "market_app/api/dashboard/index.html",
]


@dataclass
class Installed:
    tmp: Path
    wheel: Path
    python: Path
    bin: Path
    site_packages: Path
    deps: list[str]
    env: dict[str, str]

    def run(self, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(a) for a in args], cwd=self.tmp, env=self.env, capture_output=True, text=True,
                              timeout=timeout)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "VIRTUAL_ENV", "PYTHONUSERBASE"}}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    assert not tmp.resolve().is_relative_to(ROOT)
    env = _clean_env()

    # build from a copy of what the wheel is made of: an in-tree build would leave build/ in the checkout
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=ignore)
    dist = tmp / "dist"
    _check(subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                           "--no-index", "--disable-pip-version-check", "-q", "-w", str(dist)],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=300), "pip wheel")
    (wheel,) = dist.glob("poc_market-*.whl")

    # a bare venv; this project's pip installs the wheel into it (before it can see .venv, where
    # poc-market is installed editable and pip would call the requirement satisfied)
    venv = tmp / "venv"
    _check(subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=120), "python -m venv")
    python = venv / "bin" / "python"
    _check(subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                           "--disable-pip-version-check", "-q", str(wheel)],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=300), "pip install wheel")
    site_packages = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        cwd=tmp, env=env, capture_output=True, text=True, check=True).stdout.strip())

    # third-party dependencies: .venv's site-packages on sys.path, as a plain path (not a site dir)
    deps = list(dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]))
    (site_packages / "_poc_market_deps.pth").write_text("".join(f"{p}\n" for p in deps))
    return Installed(tmp, wheel, python, venv / "bin", site_packages.resolve(), deps, env)


PROBE = r"""
import importlib, importlib.util, json, pkgutil, sys
from pathlib import Path

packages, site_packages, root = json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
deps = [Path(d).resolve() for d in json.loads(sys.argv[4])]  # .venv's site-packages: third-party code only
imported, bad = {}, []

def where(mod):
    f = getattr(mod, "__file__", None)
    return str(Path(f).resolve()) if f else None

for pkg_name in packages:
    try:
        pkg = importlib.import_module(pkg_name)
    except Exception as exc:
        bad.append(f"{pkg_name}: {type(exc).__name__}: {exc}")
        continue
    imported[pkg_name] = where(pkg)
    for info in pkgutil.walk_packages(pkg.__path__, pkg_name + ".",
                                      onerror=lambda name: bad.append(f"{name}: {sys.exc_info()[0].__name__}: {sys.exc_info()[1]}")):
        try:
            if info.name.rsplit(".", 1)[-1] == "__main__":  # `python -m` entry: importing it runs the program
                spec = importlib.util.find_spec(info.name)
                imported[info.name] = str(Path(spec.origin).resolve()) if spec and spec.origin else None
                continue
            imported[info.name] = where(importlib.import_module(info.name))
        except Exception as exc:
            bad.append(f"{info.name}: {type(exc).__name__}: {exc}")

from_root = sorted(name for name, mod in list(sys.modules.items())
                   if (f := where(mod)) and Path(f).is_relative_to(root)
                   and not any(Path(f).is_relative_to(d) for d in deps))
editable = [name for name in sys.modules if "__editable__" in name]
editable += [repr(f) for f in sys.meta_path if "editable" in type(f).__module__.lower()]
print(json.dumps({"imported": imported, "bad": bad, "from_root": from_root, "editable": editable,
                  "sys_path": sys.path}))
"""


def test_editable_hook_is_not_run_in_the_wheel_venv(installed: Installed) -> None:
    # the thing this set-up must avoid really is there: .venv holds the editable install's finder hook
    hooks = [p for d in installed.deps for p in Path(d).glob("__editable__*.pth")]
    assert hooks, "expected the editable install's .pth hook in .venv (make install)"
    proc = installed.run(installed.python, "-c", "import sys, json; print(json.dumps({'path': sys.path, "
                         "'mods': [m for m in sys.modules if 'editable' in m], "
                         "'finders': [repr(f) for f in sys.meta_path]}))")
    _check(proc, "probe")
    got = json.loads(proc.stdout)
    assert got["mods"] == [] and not any("editable" in f.lower() for f in got["finders"])
    assert str(ROOT) not in got["path"]
    assert all(d in got["path"] for d in installed.deps)


def test_every_module_imports_from_the_installed_wheel(installed: Installed) -> None:
    proc = installed.run(installed.python, "-c", PROBE, json.dumps(PACKAGES), installed.site_packages, ROOT,
                         json.dumps(installed.deps))
    _check(proc, "import probe")
    got = json.loads(proc.stdout)

    assert got["bad"] == [], "modules that fail to import from the wheel:\n" + "\n".join(got["bad"])
    assert got["editable"] == []
    assert got["from_root"] == [], f"modules loaded from the checkout {ROOT}: {got['from_root']}"
    assert set(PACKAGES) <= set(got["imported"])
    outside = {name: f for name, f in got["imported"].items()
               if f is None or not Path(f).is_relative_to(installed.site_packages)}
    assert outside == {}, f"modules not imported from {installed.site_packages}"
    # the walk went deep: every .py in the wheel was imported
    with zipfile.ZipFile(installed.wheel) as zf:
        in_wheel = {n[:-3].replace("/", ".").removesuffix(".__init__") for n in zf.namelist() if n.endswith(".py")}
    assert in_wheel - set(got["imported"]) == set()


def test_console_script_help(installed: Installed) -> None:
    market = installed.bin / "market"
    assert market.read_text().startswith(f"#!{installed.python}")
    proc = installed.run(market, "--help")
    _check(proc, "market --help")
    assert "simulate" in proc.stdout


def test_tester_simulation_from_the_wheel(installed: Installed) -> None:
    report, store = installed.tmp / "R.json", installed.tmp / "D"
    proc = installed.run(installed.bin / "market", "simulate", "--chain", "tester", "--trainers", "3", "--attackers", "0",
                         "--rounds", "1", "--quiet", "--report", "R.json", "--store-dir", "D")
    _check(proc, "market simulate")
    assert store.is_dir()
    data = json.loads(report.read_text())
    assert len(data["rounds"]) == 1
    final = data["final"]
    withdrawn = {addr: int(wei) for addr, wei in final["withdrawn_wei"].items()}
    assert len(withdrawn) == 3
    assert 0 < sum(withdrawn.values()) <= int(data["reward_wei"])
    assert int(final["contract_balance_wei"]) >= 0


def test_wheel_carries_the_package_data_and_nothing_else(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as zf:
        names = zf.namelist()
    missing = [p for p in PACKAGE_DATA if p not in names]
    assert missing == [], f"package data missing from the wheel: {missing}"
    assert [n for n in names if n.startswith("market/chain/artifacts/test/")] == []
    tops = {n.split("/", 1)[0] for n in names}
    assert not any(t == "tests" or t.startswith("tests") for t in tops)
    assert tops - {t for t in tops if t.endswith(".dist-info")} == set(PACKAGES)
    # and they are installed where the code looks for them
    for p in PACKAGE_DATA:
        assert (installed.site_packages / p).is_file()
