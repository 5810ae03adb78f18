# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Follow the ERP's own posted customer invoices (account_invoice)."""
from trytond.model import fields
from trytond.pool import Pool, PoolMeta


class Administration(metaclass=PoolMeta):
    __name__ = 'payt.administration'
    follow_invoices = fields.Boolean("Follow ERP Invoices",
        help="Follow the posted customer invoices of this company.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls._buttons.update({'import_invoices': {}})

    @classmethod
    def cron_import_invoices(cls):
        cls.import_invoices(cls.search([('follow_invoices', '=', True)]))

    @classmethod
    def import_invoices(cls, administrations):
        "Feed posted customer invoices through the bulk entry point."
        for administration in administrations:
            cls.import_batch(administration.id,
                administration._invoice_batch())

    def _invoice_batch(self):
        Invoice = Pool().get('account.invoice')
        invoices = Invoice.search([
                ('company', '=', self.company.id),
                ('type', '=', 'out'),
                ('state', 'in', ['posted', 'paid']),
                ])
        debtors, items = {}, []
        for invoice in invoices:
            party = invoice.party
            external_id = 'party-%s' % party.id
            debtors[external_id] = {
                'external_id': external_id,
                'name': party.rec_name[:200],
                'kind': 'business' if party.tax_identifier else 'consumer',
                'email': party.email or None,
                'phone': party.phone or None,
                'language': (party.lang.code[:2]
                    if party.lang and party.lang.code[:2] in ('nl', 'en')
                    else 'nl'),
                }
            due_dates = [l.maturity_date for l in invoice.lines_to_pay
                if l.maturity_date]
            items.append({
                    'external_id': 'invoice-%s' % invoice.id,
                    'debtor': external_id,
                    'number': invoice.number,
                    'description': (invoice.description or '')[:1000] or None,
                    'invoice_date': invoice.invoice_date.isoformat(),
                    'due_date': min(due_dates or [invoice.invoice_date]
                        ).isoformat(),
                    'currency': invoice.currency.code,
                    'amount': str(invoice.total_amount),
                    'open_amount': str(invoice.amount_to_pay
                        if invoice.state == 'posted' else 0),
                    })
        return {'debtors': list(debtors.values()), 'items': items}


class Invoice(metaclass=PoolMeta):
    __name__ = 'account.invoice'

    @classmethod
    def _post(cls, invoices):
        super()._post(invoices)
        cls._follow_up([i for i in invoices if i.type == 'out'])

    @classmethod
    def _follow_up(cls, invoices):
        Administration = Pool().get('payt.administration')
        companies = {i.company.id for i in invoices}
        if companies:
            Administration.import_invoices(Administration.search([
                        ('company', 'in', list(companies)),
                        ('follow_invoices', '=', True),
                        ]))
