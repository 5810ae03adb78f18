# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Small helpers for the set-based SQL of the run and the import."""
from sql import Cast, Conflict, Literal
from sql.functions import Function, Lower

from trytond.transaction import Transaction


def do_nothing_on_conflict(table, columns):
    "ON CONFLICT (columns) DO NOTHING, on PostgreSQL and SQLite alike."
    return Conflict(table, indexed_columns=columns)


def invalidate_caches():
    """Forget what the ORM read earlier in this transaction: set-based SQL
    changed rows behind its back."""
    transaction = Transaction()
    transaction.counter += 1
    for cache in transaction.cache.values():
        cache.clear()


def const(value, sql_type):
    """A constant in a SELECT list. PostgreSQL cannot infer the type of a
    bare parameter there; SQLite would mangle a CAST to DATE, so only
    PostgreSQL gets the cast."""
    if _backend_name() == 'postgresql':
        return Cast(Literal(value), sql_type)
    return Literal(value)


def _function(name):
    "An SQL function python-sql does not name."
    return type(name.title(), (Function,), {
            '__slots__': (), '_function': name})


_RandomUUID = _function('GEN_RANDOM_UUID')
_Replace = _function('REPLACE')
_Hex = _function('HEX')
_RandomBlob = _function('RANDOMBLOB')


def random_key():
    """A random reference per row, made by the database (128 bits, 32 hex
    digits, within CM's 32), for rows inserted set-based: their key is on
    record from the start, so a send repeated after a lost commit carries
    the same one."""
    if _backend_name() == 'postgresql':
        return _Replace(Cast(_RandomUUID(), 'TEXT'), '-', '')
    return Lower(_Hex(_RandomBlob(16)))


def lock_free(records):
    """Those of `records` (of one model) not locked by another transaction,
    locked for this one (PostgreSQL: FOR UPDATE SKIP LOCKED): two senders
    then neither take the same rows nor wait for each other. SQLite has
    one writer at a time: all of them."""
    if _backend_name() != 'postgresql' or not records:
        return records
    table = records[0].__class__.__table__()
    cursor = Transaction().connection.cursor()
    query, params = table.select(table.id,
        where=table.id.in_([r.id for r in records]))
    cursor.execute(query + ' FOR UPDATE SKIP LOCKED', params)
    free = {i for i, in cursor}
    return [r for r in records if r.id in free]


def _backend_name():
    from trytond import backend
    return backend.name
