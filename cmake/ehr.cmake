# Shared build helpers.

# ehr_warnings(TARGET): the project's warning flags, PRIVATE to TARGET so that
# generated code and dependents are not affected.
function(ehr_warnings target)
    target_compile_options(${target} PRIVATE
        -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes
        -Wmissing-prototypes -Wvla -Wformat=2 -Wundef -Wimplicit-fallthrough
        -Wno-unused-parameter)
    if(EHR_WERROR)
        target_compile_options(${target} PRIVATE -Werror)
    endif()
    target_compile_definitions(${target} PRIVATE _GNU_SOURCE)
endfunction()
