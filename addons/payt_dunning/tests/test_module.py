# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
from trytond.tests.test_tryton import ModuleTestCase


class PaytDunningTestCase(ModuleTestCase):
    "Test the module's models, views, access and rules"
    module = 'payt_dunning'
    # Also check what the module adds when the ERP invoices itself.
    extras = ['account_invoice']


del ModuleTestCase
