"""zot's JSON config file: loading, validation and user-facing error messages.

Users paste configs written for zot, so this package reads them the way zot does (keys are
case-insensitive, as viper and mapstructure make them) and explains every problem in terms of the
file: its name, the line and column, and the key path. Four kinds of keys exist:

- keys we implement: validated by the pydantic models (models.py);
- keys zot knows that we do not implement yet and that are harmless to ignore (UNSUPPORTED_KEYS,
  tables.py): a warning that says what is ignored;
- keys zot knows that restrict who may do what, which we do not enforce (UNSUPPORTED_KEYS with
  refuse=True): an error, because ignoring them would fail open;
- keys zot does not know either: an error, with a suggestion when one is close (zot rejects
  them too, through viper's UnmarshalExact).

Loading (loader.py) goes: read the file, parse JSON (jsontext.py; trailing commas get their own
message, because zot's published redis examples carry one), map keys onto their canonical spelling
(keymap.py), validate with pydantic, and rewrite pydantic's errors into one line per problem
(messages.py). Every problem of the file is reported in one run, in file order. The files a config
names (htpasswd, certificates, the log's directory) are checked apart, in preflight.py, by `verify`
and by `serve` before it starts: parsing a config (zot's published examples, say) does not need
them. Printing is the CLI's (cli.py, preflight.py).

The modules import each other in one direction (tables, messages and base import none of them;
values imports messages; jsontext imports messages; sync imports base, jsontext, values and tables;
access imports base, sync and tables (and registry/globs.py, which imports none of this
package); models imports access, sync, values and tables; keymap imports access, jsontext and
models; loader imports keymap), and this module only re-exports their public names. The typed
extensions (sync.py, so far the only one) are ZotConfig fields read from "extensions.<name>": their
keys are checked like any other. http.accessControl is access.py; its maps of repository patterns
and of groups are keyed by names of the user's choosing, lower-cased as zot's viper does.
"""

from ..durations import parse_duration
from .access import (
    ACTIONS,
    AccessControlConfig,
    AccessGroup,
    AccessPolicy,
    MetricsAccess,
    PolicyGroup,
)
from .loader import MAX_CONFIG_BYTES, LoadedConfig, load_config, parse_config
from .messages import ConfigError, ModelProblem, PathKey, Problem
from .models import (
    DEFAULT_GC_DELAY,
    DEFAULT_GC_INTERVAL,
    AuthConfig,
    ClusterConfig,
    ClusterTLSConfig,
    HTPasswdConfig,
    HTTPConfig,
    LogConfig,
    LogLevel,
    StorageConfig,
    TLSConfig,
    ZotConfig,
)
from .sync import (
    Credentials,
    SyncConfig,
    SyncContent,
    SyncRegistry,
    SyncTags,
    load_credentials,
)
from .tables import (
    REDIS_URL_ENV,
    REFUSE_HINT,
    SUPPORTED_CACHE_DRIVERS,
    SUPPORTED_STORAGE_DRIVERS,
    UNSUPPORTED_KEYS,
    ZOT_CACHE_DRIVERS,
    ZOT_STORAGE_DRIVERS,
    Unsupported,
)
from .values import Member, OSText, parse_time_window, split_member

__all__ = [
    "ACTIONS",
    "DEFAULT_GC_DELAY",
    "DEFAULT_GC_INTERVAL",
    "MAX_CONFIG_BYTES",
    "REDIS_URL_ENV",
    "REFUSE_HINT",
    "SUPPORTED_CACHE_DRIVERS",
    "SUPPORTED_STORAGE_DRIVERS",
    "UNSUPPORTED_KEYS",
    "ZOT_CACHE_DRIVERS",
    "ZOT_STORAGE_DRIVERS",
    "AccessControlConfig",
    "AccessGroup",
    "AccessPolicy",
    "AuthConfig",
    "ClusterConfig",
    "ClusterTLSConfig",
    "ConfigError",
    "Credentials",
    "HTPasswdConfig",
    "HTTPConfig",
    "LoadedConfig",
    "LogConfig",
    "LogLevel",
    "Member",
    "MetricsAccess",
    "ModelProblem",
    "OSText",
    "PathKey",
    "PolicyGroup",
    "Problem",
    "StorageConfig",
    "SyncConfig",
    "SyncContent",
    "SyncRegistry",
    "SyncTags",
    "TLSConfig",
    "Unsupported",
    "ZotConfig",
    "load_config",
    "load_credentials",
    "parse_config",
    "parse_duration",
    "parse_time_window",
    "split_member",
]
