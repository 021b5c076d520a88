#pragma once
// Nothing of this gloo header is used by ProcessGroupGloo.hpp's declarations (see README.md).
