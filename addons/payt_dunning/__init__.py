# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
