# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Company isolation in one place: a record of one company never links to a
record of another, and what the views show read-only stays read-only for
the clients, whatever the client sends.

Record rules (the XML) decide what a user may see; this mixin decides what a
record may point at, for every user including admin and the system itself,
because a link across companies is never right (a portal link of company 1
showing a debtor of company 2, a pause of company 1 that stops company 2)."""
from trytond.i18n import gettext
from trytond.model import fields
from trytond.model.exceptions import AccessError, ValidationError
from trytond.pool import PoolMeta
from trytond.tools import grouped_slice


class CompanyLinkError(ValidationError):
    pass


class ReadonlyFieldError(AccessError):
    pass


class CompanyConsistentMixin:
    """Refuses links to another company's records and client writes of
    read-only fields.

    `_company_path` names where the record's company is: its own `company`
    field, or its parent's for lines (`'case.company'`).
    `_readonly_after_create` names fields a client may set when it creates
    the record but never change afterwards (the view makes them read-only
    once saved)."""
    __slots__ = ()
    _company_path = 'company'
    _readonly_after_create = set()

    @classmethod
    def company_link_fields(cls):
        "The Many2One fields whose target belongs to a company."
        names = []
        for name, field in cls._fields.items():
            if (not isinstance(field, fields.Many2One)
                    or isinstance(field, fields.Function)
                    or name == 'company'):
                continue
            # Only the module's own company records: a user's current
            # company (create_uid.company) is no link of the record.
            if issubclass(field.get_target(), CompanyConsistentMixin):
                names.append(name)
        return names

    def company_to_check(self):
        value = self
        for name in self._company_path.split('.'):
            value = getattr(value, name, None)
            if value is None:
                return None
        return value

    @classmethod
    def validate_fields(cls, records, field_names):
        super().validate_fields(records, field_names)
        names = [n for n in cls.company_link_fields()
            if field_names is None or n in field_names
            or cls._company_path.split('.')[0] in field_names]
        if names:
            for sub_records in grouped_slice(records):
                cls.check_company_links(list(sub_records), names)

    @classmethod
    def check_company_links(cls, records, names):
        for record in records:
            company = record.company_to_check()
            if company is None:
                continue
            for name in names:
                target = getattr(record, name)
                if target is None:
                    continue
                target_company = target.company_to_check()
                if target_company is None:
                    # A shared record (a flow without company).
                    continue
                if target_company != company:
                    raise CompanyLinkError(gettext(
                            'payt_dunning.msg_company_link',
                            target=target.rec_name,
                            target_company=target_company.rec_name,
                            company=company.rec_name,
                            **cls.__names__(name, record)))

    @classmethod
    def readonly_field_names(cls, mode):
        "The fields a client may not set in this mode."
        if mode == 'create':
            return set()
        frozen = set(cls._readonly_after_create)
        for name, field in cls._fields.items():
            if field.readonly is True and not isinstance(
                    field, fields.Function):
                frozen.add(name)
        return frozen

    @classmethod
    def check_modification(cls, mode, records, values=None, external=False):
        """Clients (RPC, not the module's own buttons and wizards) never
        change a field the views show read-only."""
        super().check_modification(
            mode, records, values=values, external=external)
        if not external or mode != 'write' or not values:
            return
        frozen = sorted(cls.readonly_field_names(mode) & set(values))
        if frozen and records:
            raise ReadonlyFieldError(gettext(
                    'payt_dunning.msg_field_readonly',
                    **cls.__names__(frozen[0], records[0])))


class ResourceExportMixin:
    """Attachments and notes are read as their resource allows; Tryton
    checks that in `read` and `search` but not in `export_data`, which
    would list the file names of another company's letters."""
    __slots__ = ()

    @classmethod
    def export_data(cls, records, fields_names, header=False):
        cls.check_access([r.id for r in records], mode='read')
        return super().export_data(records, fields_names, header=header)


class Attachment(ResourceExportMixin, metaclass=PoolMeta):
    __name__ = 'ir.attachment'


class Note(ResourceExportMixin, metaclass=PoolMeta):
    __name__ = 'ir.note'
