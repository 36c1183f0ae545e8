# Exactly once under faults and kills (docs/ORDERS.md, "Exactly once"):
# 8 clients place orders while the paper broker drops 20% of the
# placements after carrying them out and answers another 10% after the
# client's timeout, and the order sender is killed with SIGKILL three
# times (each a crash-restart of the server).  Afterwards every request is
# final, the broker holds exactly one order per placed tag and none for any
# other request, and the two books agree one to one.
#
# Sizes are parameters: TRADING_ORDERS_N (orders, default 200 here; the
# acceptance size is 1000), TRADING_ORDERS_CLIENTS (8), TRADING_ORDERS_KILLS
# (3), TRADING_ORDERS_TIMEOUT (seconds to settle, 180).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use PostgreSQL::Test::Utils;
use Test::More;
use PaperBroker;
use OrderTest;

OrderTest::exactly_once_test(kill => 'sender', kills => 3);

done_testing();
