# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Follow the ERP's own posted customer invoices (account_invoice)."""
from trytond.model import fields
from trytond.pool import Pool, PoolMeta
from trytond.transaction import without_check_access


class Administration(metaclass=PoolMeta):
    __name__ = 'payt.administration'
    follow_invoices = fields.Boolean("Follow ERP Invoices",
        help="Follow the posted customer invoices of this company.")

    @classmethod
    def cron_import_invoices(cls):
        "Every posted customer invoice again: catches payments and changes."
        for administration in cls.search([('follow_invoices', '=', True)]):
            cls.import_batch(administration.id,
                administration._invoice_batch(
                    administration._posted_invoices()))

    def _posted_invoices(self):
        Invoice = Pool().get('account.invoice')
        return Invoice.search([
                ('company', '=', self.company.id),
                ('type', '=', 'out'),
                ('state', 'in', ['posted', 'paid']),
                ])

    def _invoice_batch(self, invoices):
        "The invoices as a batch for the bulk entry point."
        debtors, items = {}, []
        for invoice in invoices:
            debtor = _debtor(invoice.party)
            debtors[debtor['external_id']] = debtor
            items.append(_item(invoice, debtor['external_id']))
        return {'debtors': list(debtors.values()), 'items': items}


def _debtor(party):
    language = party.lang.code[:2] if party.lang else 'nl'
    return {
        'external_id': 'party-%s' % party.id,
        'name': party.rec_name[:200],
        'kind': 'business' if party.tax_identifier else 'consumer',
        'email': party.email or None,
        'phone': party.phone or None,
        'language': language if language in ('nl', 'en') else 'nl',
        }


def _item(invoice, debtor_id):
    open_lines = [l for l in invoice.lines_to_pay
        if not l.reconciliation and l.maturity_date]
    due = min((l.maturity_date for l in open_lines),
        default=invoice.invoice_date)
    return {
        'external_id': 'invoice-%s' % invoice.id,
        'debtor': debtor_id,
        'number': invoice.number,
        'description': (invoice.description or '')[:1000] or None,
        'invoice_date': invoice.invoice_date.isoformat(),
        'due_date': due.isoformat(),
        'currency': invoice.currency.code,
        'amount': str(invoice.total_amount),
        'open_amount': str(
            invoice.amount_to_pay if invoice.state == 'posted' else 0),
        }


class Invoice(metaclass=PoolMeta):
    __name__ = 'account.invoice'

    @classmethod
    def _post(cls, invoices):
        super()._post(invoices)
        cls._follow_up(invoices)

    @classmethod
    def paid(cls, invoices):
        super().paid(invoices)
        cls._follow_up(invoices)

    @classmethod
    @without_check_access
    def _follow_up(cls, invoices):
        """Hand posted or paid customer invoices to their administration,
        whoever posts them: the accountant needs no debtor-management
        rights for it."""
        Administration = Pool().get('payt.administration')
        customer = [i for i in invoices if i.type == 'out']
        for administration in Administration.search([
                    ('company', 'in', list({i.company.id for i in customer})),
                    ('follow_invoices', '=', True),
                    ]):
            Administration.import_batch(administration.id,
                administration._invoice_batch([i for i in customer
                        if i.company == administration.company]))


class Cron(metaclass=PoolMeta):
    __name__ = 'ir.cron'

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.method.selection.append((
                'payt.administration|cron_import_invoices',
                "Follow Posted Customer Invoices"))
