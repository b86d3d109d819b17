#!/usr/bin/perl
# Writes a small GeoIP country database for the tests (no downloaded database):
#   make_geoip_db.pl OUT.mmdb
# Networks are documentation ranges (RFC 5737, RFC 3849) assigned to made-up countries.
use strict;
use warnings;
use MaxMind::DB::Writer::Tree;

my $out = shift or die "usage: $0 OUT.mmdb\n";
my %types = (country => 'map', iso_code => 'utf8_string', names => 'map', en => 'utf8_string');
my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version            => 6,
    record_size           => 24,
    database_type         => 'SBC-Test-Country',
    languages             => ['en'],
    description           => { en => 'sbc fraud tests' },
    map_key_type_callback => sub { $types{ $_[0] } },
    alias_ipv6_to_ipv4    => 1,
    remove_reserved_networks => 0,  # the test ranges are documentation (reserved) ranges
);
my @nets = (
    ['192.0.2.0/24',    'FR'],
    ['198.51.100.0/24', 'BE'],
    ['203.0.113.0/25',  'NG'],
    ['203.0.113.128/25', 'RU'],
    ['10.0.0.0/8',      'FR'],
    ['2001:db8::/48',   'DE'],
);
for my $n (@nets) {
    $tree->insert_network($n->[0], { country => { iso_code => $n->[1], names => { en => $n->[1] } } });
}
open my $fh, '>:raw', $out or die "$out: $!\n";
$tree->write_tree($fh);
close $fh or die "$out: $!\n";
