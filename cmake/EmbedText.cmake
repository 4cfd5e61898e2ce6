# Writes a C++ header that holds a text file as a string constant:
#
#   cmake -DINPUT=file.py -DOUTPUT=file.h -DNAME=kConstant -P EmbedText.cmake
#
# The header defines `inline constexpr char NAME[]` in namespace
# schemad::embedded, the file's bytes as one raw string literal; a file that
# holds the literal's closing delimiter is refused. Used by client/CMakeLists.txt
# (schemactl's import-alembic driver), run at build time so that an edit of
# the file rebuilds what includes the header.
file(READ "${INPUT}" content)
set(delimiter "schemad_embed")
string(FIND "${content}" ")${delimiter}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains )${delimiter}\", the raw string's end")
endif()
file(WRITE "${OUTPUT}"
     "// Generated from ${INPUT} by cmake/EmbedText.cmake: do not edit.\n"
     "#pragma once\n\n"
     "namespace schemad::embedded {\n\n"
     "inline constexpr char ${NAME}[] = R\"${delimiter}(${content})${delimiter}\";\n\n"
     "}  // namespace schemad::embedded\n")
