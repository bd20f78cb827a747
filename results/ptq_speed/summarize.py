"""Summary of results/ptq_speed/bench.sh: wall time, peak RSS and Set5 PSNR of both sides, side by side.

usage: python results/ptq_speed/summarize.py OUT_DIR LEGACY_COMMIT CURRENT_COMMIT LOAD_LINE
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _side(out: Path, side: str) -> dict[str, object]:
    stats = json.loads((out / f"{side}_stats.json").read_text())
    evaluation = json.loads((out / f"{side}_set5.json").read_text())
    finetune = stats["finetune"]
    timing = json.loads((out / f"{side}_time.json").read_text())
    return {
        "cpu_s": round(timing["user_s"] + timing["sys_s"], 1),
        "wall_s": round(stats["wall_s"], 1),
        "calibrate_s": round(stats["calibrate_s"], 1),
        "finetune_s": round(finetune["seconds"], 1),
        "steps": finetune["steps"],
        "s_per_step": round(finetune["seconds"] / finetune["steps"], 3),
        "peak_rss_mib": stats["peak_rss_mib"],
        "threads": stats["threads"],
        "final_epoch": finetune["epochs"][-1],
        "set5_psnr_y": evaluation["results"][0]["psnr"],
        "command": stats["command"],
    }


def main(argv: list[str]) -> int:
    out, legacy_commit, current_commit, load = Path(argv[0]), argv[1], argv[2], argv[3]
    legacy, current = _side(out, "legacy"), _side(out, "current")
    summary = {
        "legacy_commit": legacy_commit,
        "current_commit": current_commit,
        "load_after_run": load.strip(),
        "legacy": legacy,
        "current": current,
        "cpu_ratio": round(current["cpu_s"] / legacy["cpu_s"], 3),  # type: ignore[operator]
        "wall_ratio": round(current["wall_s"] / legacy["wall_s"], 3),  # type: ignore[operator]
        "step_ratio": round(current["s_per_step"] / legacy["s_per_step"], 3),  # type: ignore[operator]
        "psnr_delta_db": round(current["set5_psnr_y"] - legacy["set5_psnr_y"], 4),  # type: ignore[operator]
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
