"""Record the Script Lab LLM cassettes.

    python3 tests/data/scriptlab/record_cassettes.py                 # from the authored loopback replies
    python3 tests/data/scriptlab/record_cassettes.py --upstream https://api.minimax.io/v1 --scenario openai_ok
        (a developer with MINIMAX_API_KEY: records the real model's reply; the malformed-reply scenarios stay
         authored because a real model cannot be asked to misbehave on cue)
"""
import argparse
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path[:0] = [os.path.join(ROOT, "custom_nodes"), ROOT, os.path.join(ROOT, "tests")]

from scriptlab_llm_helpers import CASSETTES, SCENARIOS, run_scenario, scripted_upstream  # noqa: E402
from vibeboard.llm.cassette import CassetteServer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    ap.add_argument("--upstream", help="a real endpoint base URL (default: authored replies on loopback)")
    args = ap.parse_args()
    for name in args.scenario or sorted(SCENARIOS):
        upstream = None if args.upstream else scripted_upstream(SCENARIOS[name][2])
        with CassetteServer(os.path.join(CASSETTES, name), mode="record", upstream=args.upstream or upstream.url) as server:
            with tempfile.TemporaryDirectory() as tmp:
                result = run_scenario(name, server.url, os.path.join(tmp, "p.vbdb"))
            print(name, result["llm"]["status"][:80], [k for k, _, _ in server.exchanges])
        if upstream:
            upstream.stop()


if __name__ == "__main__":
    main()
