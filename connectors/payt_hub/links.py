"""Links: which adapter, with which settings, feeds which administration.

Production links live in the ERP (``payt.hub.link``, see erp.py). For
tests and demos without an ERP, links can also come from a JSON file named
by ``PAYT_LINKS_FILE``::

    {"1": {"adapter": "imuis", "administration_id": 1, "sink": "memory",
           "settings": {"partner_key": "env:PAYT_IMUIS_PARTNER_KEY",
                        "environment": "00000"}}}

A setting value ``env:NAME`` is read from the environment variable NAME,
so secrets need not be in the file. ``sink`` is ``memory`` (a per-process
MemorySink, for tests and demos) or ``proteus`` (ProteusSink; proteus is
configured from ``PAYT_TRYTOND_CONFIG`` and ``PAYT_DATABASE``).
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field

from .adapters.base import get_adapter
from .errors import LinkError
from .sync import MemorySink

_memory_sinks: dict[str, MemorySink] = {}
_lock = threading.Lock()


def memory_sink(link_id) -> MemorySink:
    with _lock:
        return _memory_sinks.setdefault(str(link_id), MemorySink())


def resolve(settings: dict) -> dict:
    out = {}
    for key, value in settings.items():
        if isinstance(value, str) and value.startswith('env:'):
            name = value[4:]
            if name not in os.environ:
                raise LinkError(f'setting {key}: environment variable '
                                f'{name} is not set', 'rejected')
            value = os.environ[name]
        out[key] = value
    return out


@dataclass
class Link:
    id: str
    adapter_name: str
    settings: dict = field(default_factory=dict)
    administration_id: int | None = None
    sink_kind: str = 'memory'

    def adapter(self, **defaults):
        "The adapter; ``defaults`` for settings the link does not give."
        settings = dict(defaults, **resolve(self.settings))
        return get_adapter(self.adapter_name, **settings)

    def sink(self):
        if self.sink_kind == 'memory':
            return memory_sink(self.id)
        if self.sink_kind == 'proteus':
            from proteus import config as pconfig
            from .proteus_sink import ProteusSink
            cfg = pconfig.set_trytond(
                os.environ.get('PAYT_DATABASE'),
                config_file=os.environ.get('PAYT_TRYTOND_CONFIG'))
            return ProteusSink(self.administration_id, int(self.id), cfg)
        raise LinkError(f'unknown sink {self.sink_kind!r}', 'rejected')


def load_links(path=None) -> dict[str, Link]:
    path = path or os.environ.get('PAYT_LINKS_FILE')
    if not path or not os.path.exists(path):
        return {}
    with open(path, encoding='utf-8') as f:
        data = json.load(f)
    return {str(k): Link(str(k), v['adapter'], v.get('settings', {}),
                         v.get('administration_id'), v.get('sink', 'memory'))
            for k, v in data.items()}


def get_link(link_id, path=None) -> Link:
    links = load_links(path)
    try:
        return links[str(link_id)]
    except KeyError:
        raise LinkError(f'no link {link_id} in PAYT_LINKS_FILE',
                        'rejected') from None
