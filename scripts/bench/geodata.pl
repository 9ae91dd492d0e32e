#!/usr/bin/perl

# Country data for the benchmark: client addresses that a country database
# places in the US, and, when there is no database yet, the networks of a
# test database to build with scripts/mkmmdb.pl.
#
#     scripts/bench/geodata.pl --db FILE --addresses N --seed S \
#         --addrs-out FILE
#     scripts/bench/geodata.pl --networks N --nets-out FILE \
#         --addresses N --seed S --addrs-out FILE
#
# With --db, random public IPv4 addresses are looked up in the database
# (GeoIP2 "country.iso_code" or flat "country_code" layout) and the US ones
# kept.  Without it, N random IPv4 networks are written, one NETWORK=CC per
# line; each sits alone in its own /16, so no network hides part of
# another and every address's country is known; the addresses are drawn
# from the US networks among them.  The same seed gives the same data.

use strict;
use warnings;

use Getopt::Long qw(GetOptions);


my %opt = ( networks => 50000, addresses => 1000, seed => 1 );

GetOptions( \%opt, 'db=s', 'networks=i', 'nets-out=s', 'addresses=i',
    'seed=i', 'addrs-out=s' )
    or usage();

usage() unless defined $opt{'addrs-out'}
    && ( defined $opt{db} || defined $opt{'nets-out'} );

srand $opt{seed};

my @addrs = defined $opt{db} ? from_database( $opt{db} ) : from_networks();

write_lines( $opt{'addrs-out'}, @addrs );


sub usage {
    die "usage: geodata.pl (--db FILE | --networks N --nets-out FILE)"
        . " --addresses N --seed S --addrs-out FILE\n";
}


sub from_database {
    my ($file) = @_;

    require MaxMind::DB::Reader;

    my $reader = MaxMind::DB::Reader->new( file => $file );
    my ( @addrs, %seen );

    for ( my $tries = 0; @addrs < $opt{addresses}; $tries++ ) {
        die "geodata.pl: too few US addresses in \"$file\"\n"
            if $tries > 1000 * $opt{addresses};

        my $first = 1 + int rand 223;
        next if $first == 10 || $first == 127;

        my $ip = join '.', $first, map { int rand 256 } 1 .. 3;
        next if $seen{$ip}++;

        my $record = $reader->record_for_address($ip) or next;
        my $cc = ref $record->{country} eq 'HASH'
            ? $record->{country}{iso_code}
            : $record->{country_code};

        push @addrs, $ip if defined $cc && $cc eq 'US';
    }

    return @addrs;
}


sub from_networks {

    # 1.0.0.0 to 223.255.0.0, without 10/8 and 127/8, as a.b in 16 bits
    my @blocks = grep { my $first = $_ >> 8; $first != 10 && $first != 127 }
        ( 1 << 8 ) .. ( 224 << 8 ) - 1;

    die "geodata.pl: --networks must be 1 to " . scalar(@blocks) . "\n"
        if $opt{networks} > @blocks || $opt{networks} < 1;

    # about 40% of the networks are American, as in a real database
    my @countries = ( ('US') x 8, qw(CA MX DE FR GB CN RU BR IN JP AU) );

    # a partial shuffle picks distinct /16 blocks
    for my $i ( 0 .. $opt{networks} - 1 ) {
        my $j = $i + int rand( @blocks - $i );
        @blocks[ $i, $j ] = @blocks[ $j, $i ];
    }

    my ( @nets, @us, @addrs );

    for my $block ( @blocks[ 0 .. $opt{networks} - 1 ] ) {
        my $len  = 16 + int rand 9;                  # /16 to /24
        my $host = 32 - $len;
        my $net  = ( $block << 16 ) | ( int( rand 65536 ) >> $host << $host );
        my $cc   = $countries[ rand @countries ];

        push @nets, sprintf "%s/%d=%s", dotted($net), $len, $cc;
        push @us, [ $net, $host ] if $cc eq 'US';
    }

    die "geodata.pl: no US network drawn\n" unless @us;

    for ( 1 .. $opt{addresses} ) {
        my ( $net, $host ) = @{ $us[ rand @us ] };

        # neither the network's first nor its last address
        push @addrs, dotted( $net + 1 + int rand( ( 1 << $host ) - 2 ) );
    }

    write_lines( $opt{'nets-out'}, @nets );

    return @addrs;
}


sub dotted {
    my ($n) = @_;

    return join '.', map { ( $n >> $_ ) & 255 } 24, 16, 8, 0;
}


sub write_lines {
    my ( $file, @lines ) = @_;

    open my $fh, '>', $file
        or die "geodata.pl: cannot create \"$file\": $!\n";
    print {$fh} map {"$_\n"} @lines;
    close $fh or die "geodata.pl: cannot write \"$file\": $!\n";
}
