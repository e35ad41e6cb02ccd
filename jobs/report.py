"""Render report.html for a model, labels or cluster directory (every labelling run writes one).

    python jobs/report.py labels/demo      # labels/demo/report.html: sizes, confidence, 2-D picture,
                                           # confusion matrix (with ground truth), training curve
    python jobs/report.py runs/demo        # a model directory: its training curve and settings

The page is self-contained (images embedded): open it in a browser or attach it anywhere.
Exit codes: 0 done, 2 bad input, 1 failed.
"""

import argparse
import sys


def main(argv=None) -> int:
    from ray_ncut.cli import run_job

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)  # a prefix never stands for a flag (--overwrit)
    p.add_argument("dir", help="a labels directory (metrics.json), a model directory (config.json) or a cluster "
                               "directory (model/ and labels/)")
    p.add_argument("--debug", action="store_true", help="print a traceback with an error")
    args = p.parse_args(argv)

    def work():
        import os

        from ray_ncut.outputs.local import record_added_file
        from ray_ncut.report import REPORT_FILE, write_report

        if not os.path.isdir(args.dir):
            raise ValueError(f"{args.dir} is not a directory")
        target = write_report(args.dir)
        record_added_file(args.dir, REPORT_FILE)  # still ray_ncut's output: --overwrite may replace it
        print(f"Wrote {target}")

    return run_job(work, args.debug)


if __name__ == "__main__":
    sys.exit(main())
