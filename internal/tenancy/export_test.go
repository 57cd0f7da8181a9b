package tenancy

// ErrNotInTx is the error of a viewer's write outside a transaction.
var ErrNotInTx = errNotInTx
