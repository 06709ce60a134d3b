"""Small shared utilities: atomic file output, run folders and seeding."""

from dwt_keras.utils.io import atomic_save_figure
from dwt_keras.utils.io import atomic_write_bytes
from dwt_keras.utils.io import atomic_write_json
from dwt_keras.utils.io import check_writable_dir
from dwt_keras.utils.io import make_run_dir
from dwt_keras.utils.seeding import set_seed
