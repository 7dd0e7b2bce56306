"""docs/extending.md is a working setting: its files (the code blocks titled with a path) are written to
an empty folder and its command (the ``bash`` block) runs there as it is, in a fresh environment (no
``PYTHONPATH``, no ``LOSSMOOTH_SETTINGS`` but what the command sets), end to end."""
import json
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(REPO, "docs", "extending.md")
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.M | re.S)


def blocks() -> tuple[dict, list[str]]:
    """``({path: text}, [commands])``: the page's files and its shell blocks, in order."""
    files, commands = {}, []
    for lang, attrs, text in BLOCK.findall(open(PAGE).read()):
        title = re.search(r'title="([^"]+)"', attrs)
        if title:
            files[title.group(1)] = text
        elif lang == "bash":
            commands.append(text)
    return files, commands


def test_the_page_names_a_setting_its_config_and_one_command():
    files, commands = blocks()
    assert sorted(files) == ["linreg/conf/setting/linreg.yaml", "linreg/linreg.py"] and len(commands) == 1


def test_the_extending_page_runs_end_to_end_as_written(tmp_path):
    files, (command,) = blocks()
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    # a fresh environment: the interpreter's folder (where `lossmooth` is installed) on PATH, nothing else set
    env = {"PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/bin", "/bin"]), "HOME": os.environ["HOME"],
           "WANDB_MODE": "disabled"}
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    (runs_file,) = (tmp_path / "linreg").rglob("runs.json")  # in the folder the command prints
    summary = json.loads((runs_file.parent / "summary.json").read_text())
    runs = {(r["method"], r["seed"]): r["summary"] for r in json.loads(runs_file.read_text())}
    assert summary["complete"] and summary["setting"] == "linreg" and len(runs) == 8  # 2 methods x 4 seeds
    for seed in range(4):  # both learn the target task; the ramp keeps the source task's error from jumping
        hard, smooth = runs[("hard_switch", seed)], runs[("loss_smoothing", seed)]
        assert hard["final_target_mse"] < 0.05 and smooth["final_target_mse"] < 0.05
        assert smooth["stability_gap"] < 0.5 * hard["stability_gap"]
