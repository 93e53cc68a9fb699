//! Sans-I/O HTTP/1.1: bounded request head parsing and responses.
