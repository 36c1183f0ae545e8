-- trading 1.0 -> 1.1.  This upgrade script is the concatenation of
-- extension/versions/1.0--1.1/*.sql in name order (see Makefile).  A file
-- here is either a change to what 1.0 created, or a symbolic link to a
-- file of extension/sql/ that 1.1 adds whole.  The result must equal a
-- fresh install of 1.1: t/005_upgrade.pl compares the two.

\echo Use "ALTER EXTENSION trading UPDATE TO '1.1'" to load this file. \quit
