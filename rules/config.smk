# Read before the `configfile:` directive: a YAML error in the workflow's own config.yaml is one
# line naming file, line and column (Snakemake's own message names neither). Files given with
# --configfile are read by Snakemake before the workflow starts: check them with
# `python -m reschrom.config FILE`.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from reschrom.config import ConfigError, load_config_file

try:
    load_config_file(Path(workflow.basedir) / "config.yaml")
except ConfigError as err:
    sys.stderr.write(f"reschrom: {err}\n")
    sys.exit(1)
